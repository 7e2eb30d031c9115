// rsparts rebuilds and encodes the parts of an airlock split bundle with
// github.com/klauspost/reedsolomon, written from docs/bundle-format.md ("Volumes") alone and
// sharing no code with airlock: the test suite uses it to prove that the document is enough for
// another implementation (tests/it/volumes.rs, Peer::Rsparts).
//
//	rsparts rebuild OUT   rebuilds every part of OUT that is missing or whose size or sha256
//	                      differs from OUT.parts, and prints each rebuilt part's name
//	rsparts parity OUT    writes the parity parts OUT.p01 … that OUT.parts lists, from the data
//	                      parts, and prints their names
//
// It trusts OUT.parts as it is (checking its minisign signature is airlock's job, and any other
// implementation's with minisign).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/reedsolomon"
)

type part struct {
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
}

type partList struct {
	MediaType   string `json:"mediaType"`
	BundleID    string `json:"bundleId"`
	BundleBytes int64  `json:"bundleBytes"`
	VolumeSize  int64  `json:"volumeSize"`
	Parts       []part `json:"parts"`
	Parity      *struct {
		Scheme string `json:"scheme"`
		Parts  []part `json:"parts"`
	} `json:"parity"`
}

// stripe is how many bytes of every part are coded at once; the code is per byte offset, so any
// size gives the same bytes.
const stripe = 1 << 20

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "rebuild" && os.Args[1] != "parity") {
		fmt.Fprintln(os.Stderr, "usage: rsparts rebuild|parity OUT")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "rsparts:", err)
		os.Exit(1)
	}
}

func run(cmd, out string) error {
	raw, err := os.ReadFile(out + ".parts")
	if err != nil {
		return err
	}
	var list partList
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("%s.parts: %w", out, err)
	}
	if list.Parity == nil || list.Parity.Scheme != "reed-solomon-gf256-vandermonde" {
		return errors.New("the part list has no reed-solomon-gf256-vandermonde parity")
	}
	k, m := len(list.Parts), len(list.Parity.Parts)
	names := make([]string, 0, k+m)
	parts := append(append([]part{}, list.Parts...), list.Parity.Parts...)
	for i := 0; i < k; i++ {
		names = append(names, fmt.Sprintf("%s.%03d", out, i+1))
	}
	for j := 0; j < m; j++ {
		names = append(names, fmt.Sprintf("%s.p%02d", out, j+1))
	}
	lost := map[int]bool{}
	if cmd == "parity" {
		for j := 0; j < m; j++ {
			lost[k+j] = true
		}
	} else {
		for i := range parts {
			if !intact(names[i], parts[i]) {
				lost[i] = true
			}
		}
	}
	if len(lost) > m {
		return fmt.Errorf("%d parts lost, parity rebuilds at most %d", len(lost), m)
	}
	if err := code(names, parts, k, m, lost); err != nil {
		return err
	}
	for i := range parts {
		if lost[i] {
			if !intact(names[i], parts[i]) {
				return fmt.Errorf("%s: rebuilt, but its sha256 is not the listed one", names[i])
			}
			fmt.Println(names[i])
		}
	}
	return nil
}

// intact says whether the file has the listed size and sha256.
func intact(name string, p part) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return err == nil && n == p.Size && "sha256:"+hex.EncodeToString(h.Sum(nil)) == p.Digest
}

// code reads every part that is not lost stripe by stripe, each taken as long as the first data
// part (zeros past its end), and writes the lost ones, each cut to its listed size.
func code(names []string, parts []part, k, m int, lost map[int]bool) error {
	enc, err := reedsolomon.New(k, m)
	if err != nil {
		return err
	}
	files := make([]*os.File, len(parts))
	for i, name := range names {
		if lost[i] {
			files[i], err = os.Create(name + ".rsparts")
		} else {
			files[i], err = os.Open(name)
		}
		if err != nil {
			return err
		}
		defer files[i].Close()
	}
	length := parts[0].Size
	for at := int64(0); at < length; at += stripe {
		n := min(stripe, length-at)
		shards := make([][]byte, len(parts))
		for i, f := range files {
			if lost[i] {
				continue
			}
			shards[i] = make([]byte, n)
			if real := min(n, max(0, parts[i].Size-at)); real > 0 {
				if _, err := f.ReadAt(shards[i][:real], at); err != nil {
					return fmt.Errorf("%s: %w", names[i], err)
				}
			}
		}
		if err := enc.Reconstruct(shards); err != nil {
			return err
		}
		for i, f := range files {
			if real := min(n, max(0, parts[i].Size-at)); lost[i] && real > 0 {
				if _, err := f.WriteAt(shards[i][:real], at); err != nil {
					return fmt.Errorf("%s: %w", names[i], err)
				}
			}
		}
	}
	for i, name := range names {
		if lost[i] {
			if err := os.Rename(name+".rsparts", name); err != nil {
				return err
			}
		}
	}
	return nil
}
