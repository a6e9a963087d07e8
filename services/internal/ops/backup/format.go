// Package backup writes and restores a snapshot of every stream and bucket
// the pipeline keeps (cursors, record-ID sets, destination versions, the
// replay window, dead letters, the audit), using JetStream's own snapshot
// and restore API ($JS.API.STREAM.SNAPSHOT / RESTORE: nats.go has no client
// for it).
//
// JetStream's snapshot of an encrypted store is plain: the server decrypts
// every block before sending it, and RECORDS_RAW holds approved PHI. So a
// backup file is encrypted itself (AES-256-GCM, key derived from a key file,
// by default the store key), unless the operator asks for a plain one.
//
// File layout (format 1):
//
//	"RELAYBAK" | uint32 n | n bytes of plain JSON (about: format, key id, salt, versions)
//	then frames: uint32 length | frame (sealed with AES-GCM when encrypted)
//
// A frame is a type byte and a payload: 'H' header, 'S' a stream's config and
// state, 'D' a chunk of its snapshot, 'E' its end (size and SHA-256), and
// 'Z' the end of the file. Frames are numbered by their GCM nonce, and the
// about block is their additional data: a reordered, truncated or altered
// file does not decrypt, and a plain one fails its checksums.
package backup

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Format is the file format this relay writes and the newest it reads.
const Format = 1

const magic = "RELAYBAK"

// maxFrame bounds one frame (snapshot chunks are 128 KiB): a larger length
// means a damaged file, not a reason to allocate gigabytes.
const maxFrame = 4 << 20

const (
	frameHeader = 'H'
	frameStream = 'S'
	frameData   = 'D'
	frameEnd    = 'E'
	frameFinal  = 'Z'
)

// About is the plain part of a backup file: enough to refuse it with a
// clear message (a newer format, another key) before decrypting anything.
type About struct {
	Format     int       `json:"format"`
	Encrypted  bool      `json:"encrypted"`
	KeyID      string    `json:"key_id,omitempty"`
	Salt       string    `json:"salt"`
	Created    time.Time `json:"created"`
	Relay      string    `json:"relay_version"`
	NATSServer string    `json:"nats_server_version"`
}

// header is the first frame: the streams in the order they were taken.
type header struct {
	Streams []string `json:"streams"`
	// Busy lists what was in progress when the backup was taken (site runs,
	// unfinished stage backlogs): restored, it is redone.
	Busy []string `json:"busy,omitempty"`
}

// streamStart is a stream's config and state as the server gave them.
type streamStart struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
}

// streamEnd closes a stream's snapshot.
type streamEnd struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

type final struct {
	Streams int   `json:"streams"`
	Bytes   int64 `json:"bytes"`
}

// KeyID names a key without revealing it: restore compares it before
// decrypting, so a backup from another deployment is refused by name.
func KeyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("relay backup key id v1"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

func fileCipher(key, salt []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, key, salt, "relay backup v1 aes-256-gcm", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// frameWriter writes numbered frames, sealed when aead is set.
type frameWriter struct {
	w     io.Writer
	aead  cipher.AEAD
	ad    []byte
	n     uint64
	wrote int64
}

func newFrameWriter(w io.Writer, about About, key []byte) (*frameWriter, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	about.Format, about.Salt = Format, hex.EncodeToString(salt)
	fw := &frameWriter{w: w}
	if key != nil {
		about.Encrypted, about.KeyID = true, KeyID(key)
		aead, err := fileCipher(key, salt)
		if err != nil {
			return nil, err
		}
		fw.aead = aead
	}
	ad, err := json.Marshal(about)
	if err != nil {
		return nil, err
	}
	fw.ad = ad
	var lenBuf [4]byte
	binary.BigEndian.PutUint32(lenBuf[:], uint32(len(ad)))
	if err := fw.raw([]byte(magic), lenBuf[:], ad); err != nil {
		return nil, err
	}
	return fw, nil
}

func (fw *frameWriter) raw(parts ...[]byte) error {
	for _, p := range parts {
		n, err := fw.w.Write(p)
		fw.wrote += int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

func (fw *frameWriter) frame(kind byte, payload []byte) error {
	plain := append([]byte{kind}, payload...)
	body := plain
	if fw.aead != nil {
		body = fw.aead.Seal(nil, nonce(fw.n), plain, fw.ad)
	}
	fw.n++
	var lenBuf [4]byte
	binary.BigEndian.PutUint32(lenBuf[:], uint32(len(body)))
	return fw.raw(lenBuf[:], body)
}

func (fw *frameWriter) json(kind byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return fw.frame(kind, b)
}

func nonce(n uint64) []byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[4:], n)
	return b[:]
}

// frameReader reads what frameWriter wrote.
type frameReader struct {
	r     io.Reader
	aead  cipher.AEAD
	ad    []byte
	n     uint64
	About About
}

// ErrNotBackup is a file that is not a relay backup at all.
var ErrNotBackup = errors.New("not a relay backup file")

// readAbout reads the plain part and refuses a newer format.
func readAbout(r io.Reader) (*frameReader, error) {
	var head [12]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || string(head[:8]) != magic {
		return nil, ErrNotBackup
	}
	n := binary.BigEndian.Uint32(head[8:])
	if n > 64<<10 {
		return nil, ErrNotBackup
	}
	ad := make([]byte, n)
	if _, err := io.ReadFull(r, ad); err != nil {
		return nil, fmt.Errorf("%w (truncated at its start)", ErrNotBackup)
	}
	fr := &frameReader{r: r, ad: ad}
	if err := json.Unmarshal(ad, &fr.About); err != nil {
		return nil, fmt.Errorf("%w (its description does not parse: %v)", ErrNotBackup, err)
	}
	if fr.About.Format > Format || fr.About.Format < 1 {
		return nil, fmt.Errorf("backup format %d (written by relay %s) is newer than this relay reads (format %d): restore with relay %s or newer",
			fr.About.Format, fr.About.Relay, Format, fr.About.Relay)
	}
	return fr, nil
}

// unlock checks the key against the file's key id and prepares decryption.
func (fr *frameReader) unlock(key []byte) error {
	a := fr.About
	if !a.Encrypted {
		return nil
	}
	if key == nil {
		return fmt.Errorf("the backup is encrypted (key id %s): give the key file it was made with (--key-file, by default the NATS store key)", a.KeyID)
	}
	if id := KeyID(key); id != a.KeyID {
		return fmt.Errorf("the backup was made with another key (key id %s); the key given has id %s: give the store key of the deployment that made it", a.KeyID, id)
	}
	salt, err := hex.DecodeString(a.Salt)
	if err != nil {
		return fmt.Errorf("%w (bad salt)", ErrNotBackup)
	}
	fr.aead, err = fileCipher(key, salt)
	return err
}

// next returns the next frame's type and payload.
func (fr *frameReader) next() (byte, []byte, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(fr.r, lenBuf[:]); err != nil {
		return 0, nil, fmt.Errorf("the backup ends early (after frame %d): it is truncated", fr.n)
	}
	n := binary.BigEndian.Uint32(lenBuf[:])
	if n == 0 || n > maxFrame {
		return 0, nil, fmt.Errorf("the backup is damaged at frame %d (length %d)", fr.n, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(fr.r, body); err != nil {
		return 0, nil, fmt.Errorf("the backup ends early (in frame %d): it is truncated", fr.n)
	}
	if fr.aead != nil {
		plain, err := fr.aead.Open(body[:0], nonce(fr.n), body, fr.ad)
		if err != nil {
			return 0, nil, fmt.Errorf("the backup is damaged at frame %d: it does not decrypt (altered or cut)", fr.n)
		}
		body = plain
	}
	fr.n++
	if len(body) == 0 {
		return 0, nil, fmt.Errorf("the backup is damaged at frame %d (empty)", fr.n-1)
	}
	return body[0], body[1:], nil
}

func (fr *frameReader) json(want byte, v any) error {
	kind, payload, err := fr.next()
	if err != nil {
		return err
	}
	if kind != want {
		return fmt.Errorf("the backup is damaged at frame %d: a %q frame where a %q was expected", fr.n-1, kind, want)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("the backup is damaged at frame %d: %v", fr.n-1, err)
	}
	return nil
}
