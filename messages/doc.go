// Package messages holds REDCap Relay's message contracts and nothing else:
// subject and stream names, the JSON bodies that travel between services,
// and the deterministic message IDs that make JetStream dedupe and replays safe.
//
// Every body carries V (the contract version). A service that reads a body
// with a V it does not know dead-letters it instead of guessing.
package messages
