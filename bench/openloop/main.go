// Command openloop is the bench's open-loop HTTP/1.1 load generator: requests at a constant
// rate on a fixed pool of keep-alive connections, latency measured from each request's
// scheduled time (like wrk2), so a slow server shows its queueing instead of hiding it.
//
// Why not vegeta: on the bench's 2 cores the load generator shares the CPU with what it
// measures, and vegeta (net/http, a goroutine and allocations per request, connections dialled
// when all are busy) spent 0.07-0.14 ms of CPU per request, a third to half of what the whole
// rtml stack spends. This client writes pre-built request bytes and reads responses with one
// buffered reader per connection, in one OS thread.
//
//	openloop -addr 127.0.0.1:8000 -path /api/v1/predict -bodies bodies.jsonl \
//	    -rate 4000 -duration 10s -connections 256 -output results.csv
//
// bodies: one request body per line, sent in order (request n gets line n mod count).
// output: one CSV line per scheduled request, in schedule order:
// seq,scheduled_ns,sent_ns,done_ns,status,error (times from the run's start; status 0 and an
// error text, commas and quotes replaced, when no HTTP response came; sent_ns and done_ns 0
// when never sent).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type record struct {
	sent, done int64
	status     int
	err        string
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "host:port of the server")
	path := flag.String("path", "/api/v1/predict", "request path (POST)")
	bodiesPath := flag.String("bodies", "", "file of request bodies, one per line")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	connections := flag.Int("connections", 256, "keep-alive connections, dialled before the run")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout")
	output := flag.String("output", "", "CSV results file")
	flag.Parse()
	if *bodiesPath == "" || *output == "" || *rate <= 0 || *connections <= 0 {
		fail(errors.New("-bodies, -output, a positive -rate and -connections are required"))
	}
	requests, err := buildRequests(*bodiesPath, *addr, *path)
	if err != nil {
		fail(err)
	}
	total := int(*rate * duration.Seconds())
	if total < 1 {
		total = 1
	}
	records := make([]record, total)
	// Every scheduled request fits in the queue: the scheduler never waits for a connection,
	// so the schedule holds however slow the server is (the wait shows as latency).
	jobs := make(chan int, total)
	conns := make([]net.Conn, *connections)
	for i := range conns {
		if conns[i], err = net.Dial("tcp", *addr); err != nil {
			fail(fmt.Errorf("dial %s: %w", *addr, err))
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Add(1)
		go func(conn net.Conn) {
			defer wg.Done()
			serve(conn, *addr, requests, jobs, records, start, *timeout)
		}(conn)
	}
	interval := float64(time.Second) / *rate
	for n := 0; n < total; {
		now := time.Since(start)
		due := time.Duration(float64(n) * interval)
		if due > now {
			time.Sleep(due - now)
			continue
		}
		// After a late wake-up, everything due goes out at once (its latency still counts
		// from its own scheduled time).
		for n < total && time.Duration(float64(n)*interval) <= now {
			jobs <- n
			n++
		}
	}
	close(jobs)
	wg.Wait()
	if err := writeRecords(*output, records, interval); err != nil {
		fail(err)
	}
}

func buildRequests(bodiesPath, addr, path string) ([][]byte, error) {
	raw, err := os.ReadFile(bodiesPath)
	if err != nil {
		return nil, err
	}
	var requests [][]byte
	for _, body := range bytes.Split(raw, []byte("\n")) {
		if len(body) == 0 {
			continue
		}
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\n\r\n", path, addr, len(body))
		requests = append(requests, append([]byte(head), body...))
	}
	if len(requests) == 0 {
		return nil, fmt.Errorf("no bodies in %s", bodiesPath)
	}
	return requests, nil
}

// serve sends the jobs it takes on one connection, one at a time, redialling after an error.
func serve(conn net.Conn, addr string, requests [][]byte, jobs <-chan int, records []record,
	start time.Time, timeout time.Duration) {
	reader := bufio.NewReaderSize(conn, 16<<10)
	for n := range jobs {
		if conn == nil {
			var err error
			if conn, err = net.DialTimeout("tcp", addr, timeout); err != nil {
				records[n] = record{status: 0, err: "dial: " + err.Error()}
				conn = nil
				continue
			}
			reader.Reset(conn)
		}
		sent := time.Since(start)
		_ = conn.SetDeadline(start.Add(sent + timeout))
		status, keep, err := exchange(conn, reader, requests[n%len(requests)])
		done := time.Since(start)
		records[n] = record{sent: int64(sent), done: int64(done), status: status}
		if err != nil {
			records[n].err = err.Error()
		}
		if err != nil || !keep {
			_ = conn.Close()
			conn = nil
		}
	}
	if conn != nil {
		_ = conn.Close()
	}
}

// exchange writes one request and reads its response (status line, headers, a
// Content-Length body). keep is false when the server asked to close the connection.
func exchange(conn net.Conn, reader *bufio.Reader, request []byte) (status int, keep bool, err error) {
	if _, err = conn.Write(request); err != nil {
		return 0, false, err
	}
	line, err := reader.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, keep := -1, true
	for {
		header, err := reader.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		header = bytes.TrimRight(header, "\r\n")
		if len(header) == 0 {
			break
		}
		name, value, found := bytes.Cut(header, []byte(":"))
		if !found {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return status, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return status, false, fmt.Errorf("unsupported Transfer-Encoding %q", value)
		}
	}
	if length < 0 {
		return status, false, errors.New("response without Content-Length")
	}
	if _, err = reader.Discard(length); err != nil {
		return status, false, err
	}
	return status, keep, nil
}

// csvSafe keeps an error text one unquoted CSV field.
var csvSafe = strings.NewReplacer(",", ";", "\"", "'", "\n", " ", "\r", " ")

func writeRecords(path string, records []record, interval float64) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	sink := bufio.NewWriterSize(file, 1<<20)
	for n, r := range records {
		scheduled := int64(float64(n) * interval)
		status, message := r.status, r.err
		if r.sent == 0 && r.done == 0 && message == "" {
			message = "never sent"
		}
		fmt.Fprintf(sink, "%d,%d,%d,%d,%d,%s\n", n, scheduled, r.sent, r.done, status,
			csvSafe.Replace(message))
	}
	if err := sink.Flush(); err != nil {
		return err
	}
	return file.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "openloop:", err)
	os.Exit(2)
}
