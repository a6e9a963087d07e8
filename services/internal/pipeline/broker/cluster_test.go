package broker

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// A cluster node's settings: a misconfigured node says what is missing
// instead of starting as a lone server or a nameless node.
func TestClusterOptions(t *testing.T) {
	for _, c := range []struct {
		o    EmbeddedOptions
		want string
	}{
		{EmbeddedOptions{Routes: []string{"a:6222"}}, "no cluster listen address"},
		{EmbeddedOptions{ClusterListen: "0.0.0.0:6222", ClusterName: "relay"}, "name of its own"},
		{EmbeddedOptions{ClusterListen: "0.0.0.0:6222", ServerName: "n1"}, "cluster needs a name"},
		{EmbeddedOptions{ClusterListen: "6222", ServerName: "n1", ClusterName: "relay"}, "give host:port"},
		{EmbeddedOptions{ClusterListen: ":x", ServerName: "n1", ClusterName: "relay"}, "not a number"},
	} {
		err := clusterOptions(&server.Options{}, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want it to say %q", c.o, err, c.want)
		}
	}
	opts := &server.Options{}
	err := clusterOptions(opts, EmbeddedOptions{ServerName: "n1", ClusterName: "relay", ClusterListen: ":6222", Routes: []string{"nats-2:6222", " nats-route://nats-3:6222", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if opts.ServerName != "n1" || opts.Cluster.Name != "relay" || opts.Cluster.Host != "0.0.0.0" || opts.Cluster.Port != 6222 || len(opts.Routes) != 2 ||
		opts.Routes[0].String() != "nats-route://nats-2:6222" {
		t.Errorf("cluster options: %+v %+v %v", opts.ServerName, opts.Cluster, opts.Routes)
	}
	// Unset, a config file's cluster block stays as it is.
	opts = &server.Options{ServerName: "f1", Cluster: server.ClusterOpts{Name: "file", Port: 7222}}
	if err := clusterOptions(opts, EmbeddedOptions{}); err != nil || opts.Cluster.Port != 7222 || opts.ServerName != "f1" {
		t.Errorf("config file's cluster settings: %v %+v", err, opts.Cluster)
	}
}
