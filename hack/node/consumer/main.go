// consumer: a workload that uses the SAS token the way the README recommends. It reads the
// mounted Secret's sasUrl (a container URL plus token) afresh before every request, uploads a
// blob and downloads it again, and prints one JSON line per round and one per token change.
// It never prints the token: only a short hash of it.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func emit(fields map[string]any) {
	fields["at"] = time.Now().UTC().Format(time.RFC3339Nano)
	line, _ := json.Marshal(fields)
	fmt.Println(string(line))
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// describe names what failed without the URL (which holds the token).
func describe(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Op + ": " + urlErr.Err.Error()
	}
	return "request failed"
}

func request(client *http.Client, method, target string, body []byte) (int, []byte, string) {
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "bad request"
	}
	req.Header.Set("x-ms-version", "2025-11-05")
	if method == http.MethodPut {
		req.Header.Set("x-ms-blob-type", "BlockBlob")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, describe(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, ""
}

func main() {
	dir := os.Getenv("SAS_DIR")
	if dir == "" {
		dir = "/var/run/sas"
	}
	interval, err := time.ParseDuration(os.Getenv("INTERVAL"))
	if err != nil {
		interval = time.Second
	}
	client := &http.Client{Timeout: 10 * time.Second}
	lastToken := ""
	lastRound := time.Time{}
	for seq := 0; ; {
		raw, err := os.ReadFile(filepath.Join(dir, "sasUrl"))
		if err != nil {
			emit(map[string]any{"event": "no-token", "error": "cannot read sasUrl"})
			time.Sleep(200 * time.Millisecond)
			continue
		}
		base, token, found := strings.Cut(strings.TrimSpace(string(raw)), "?")
		if !found {
			emit(map[string]any{"event": "no-token", "error": "sasUrl has no query"})
			time.Sleep(200 * time.Millisecond)
			continue
		}
		hash := tokenHash(token)
		if hash != lastToken {
			expires, _ := os.ReadFile(filepath.Join(dir, "expiresAt"))
			emit(map[string]any{"event": "token-changed", "token": hash, "expiresAt": strings.TrimSpace(string(expires))})
			lastToken = hash
		}
		// The file is checked every 200 ms (to time the kubelet's update); requests every interval.
		if time.Since(lastRound) < interval {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		lastRound = time.Now()
		seq++
		body := []byte(fmt.Sprintf("round %d at %s", seq, lastRound.UTC().Format(time.RFC3339Nano)))
		blob := fmt.Sprintf("%s/consumer-%d.txt?%s", base, seq%10, token)
		put, _, putErr := request(client, http.MethodPut, blob, body)
		get, got, getErr := request(client, http.MethodGet, blob, nil)
		ok := put == http.StatusCreated && get == http.StatusOK && bytes.Equal(got, body)
		fields := map[string]any{"event": "round", "seq": seq, "token": hash, "put": put, "get": get, "ok": ok}
		if putErr != "" {
			fields["putError"] = putErr
		}
		if getErr != "" {
			fields["getError"] = getErr
		}
		emit(fields)
	}
}
