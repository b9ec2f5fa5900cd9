// go-peer is hashicorp/yamux itself on one end of a TCP connection, for test/mux/go-interop.test.ts.
//
// It is built by the test in GOPATH mode (GO111MODULE=off, GOPATH=/usr/share/gocode) against
// Debian's golang-github-hashicorp-yamux-dev, so nothing is downloaded.
//
// Every stream our side opens starts with one command byte:
//
//	'E' echo everything after it, then Close (FIN) once our FIN has arrived
//	'H' read to our FIN, then reply "<bytes> <sha256 hex>\n" and Close: a reply sent after the
//	    peer's half-close
//
// The -task flag says what the Go side opens itself, all streams from goroutines released at
// once, as Go programs do:
//
//	echo: -streams streams, each writes an 8-byte header (u32 index, u32 length) and a patterned
//	      body, reads the echo back in full, checks it byte for byte, then Close
//	fin:  -streams streams, each writes header and body, then Close (FIN) without reading
//	big:  like fin on one stream, -size bytes: larger than the window, to a reader that may pause
//	none: open nothing
//
// It prints "TASK ok <n>" or "TASK FAIL <reason>" once its streams are done, then keeps serving
// until the session ends, and exits 1 if anything failed.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/yamux"
)

// pattern fills b with the bytes of stream index k; the test computes the same function.
func pattern(k uint32, b []byte) {
	for i := range b {
		b[i] = byte(uint32(i)*131 + k*17 + uint32(i>>16))
	}
}

func payload(k uint32, size int) []byte {
	b := make([]byte, 8+size)
	binary.BigEndian.PutUint32(b[0:4], k)
	binary.BigEndian.PutUint32(b[4:8], uint32(size))
	pattern(k, b[8:])
	return b
}

var failed int32

func fail(format string, args ...interface{}) {
	atomic.StoreInt32(&failed, 1)
	fmt.Fprintf(os.Stderr, "go-peer: "+format+"\n", args...)
}

func serve(stream *yamux.Stream) {
	defer stream.Close()
	cmd := make([]byte, 1)
	if _, err := io.ReadFull(stream, cmd); err != nil {
		fail("stream %d: reading the command byte: %v", stream.StreamID(), err)
		return
	}
	switch cmd[0] {
	case 'E':
		if _, err := io.Copy(stream, stream); err != nil {
			fail("stream %d: echo: %v", stream.StreamID(), err)
		}
	case 'H':
		h := sha256.New()
		n, err := io.Copy(h, stream)
		if err != nil {
			fail("stream %d: hash: %v", stream.StreamID(), err)
			return
		}
		fmt.Fprintf(stream, "%d %x\n", n, h.Sum(nil))
	default:
		fail("stream %d: unknown command %q", stream.StreamID(), cmd[0])
	}
}

// size of stream k's body in the echo task: mostly small, every tenth one above the 256 KiB window.
func echoSize(k int, big int) int {
	if k%10 == 9 {
		return big
	}
	return 1 + (k*7919)%(64*1024)
}

func runTask(session *yamux.Session, task string, streams int, size int) error {
	if task == "none" {
		return nil
	}
	start := make(chan struct{})
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for k := 0; k < streams; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			<-start
			stream, err := session.OpenStream()
			if err != nil {
				errs <- fmt.Errorf("open %d: %v", k, err)
				return
			}
			n := size
			if task == "echo" {
				n = echoSize(k, size)
			}
			body := payload(uint32(k), n)
			switch task {
			case "echo":
				// Write and read at once: a body larger than the window cannot be written in full first.
				got := make([]byte, len(body))
				done := make(chan error, 1)
				go func() {
					_, err := io.ReadFull(stream, got)
					done <- err
				}()
				if _, err := stream.Write(body); err != nil {
					errs <- fmt.Errorf("stream %d (#%d): write: %v", stream.StreamID(), k, err)
					return
				}
				if err := <-done; err != nil {
					errs <- fmt.Errorf("stream %d (#%d): reading the echo: %v", stream.StreamID(), k, err)
					return
				}
				if !bytes.Equal(got, body) {
					errs <- fmt.Errorf("stream %d (#%d): the echo differs from what was sent", stream.StreamID(), k)
					return
				}
				stream.Close()
			default:
				if _, err := stream.Write(body); err != nil {
					errs <- fmt.Errorf("stream %d (#%d): write: %v", stream.StreamID(), k, err)
					return
				}
				stream.Close()
			}
		}(k)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

func main() {
	role := flag.String("role", "server", "client: dial -addr; server: listen on 127.0.0.1:0 and print LISTEN <port>")
	addr := flag.String("addr", "", "address to dial as client")
	task := flag.String("task", "none", "echo, fin, big or none")
	streams := flag.Int("streams", 100, "streams the task opens")
	size := flag.Int("size", 300*1024, "body size: of the big stream, and of every tenth echo stream")
	flag.Parse()
	if *task == "big" {
		*streams = 1
	}

	var conn net.Conn
	var err error
	if *role == "client" {
		conn, err = net.Dial("tcp", *addr)
	} else {
		var ln net.Listener
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			fmt.Printf("LISTEN %d\n", ln.Addr().(*net.TCPAddr).Port)
			conn, err = ln.Accept()
			ln.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-peer:", err)
		os.Exit(2)
	}

	config := yamux.DefaultConfig()
	config.LogOutput = os.Stderr
	var session *yamux.Session
	if *role == "client" {
		session, err = yamux.Client(conn, config)
	} else {
		session, err = yamux.Server(conn, config)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-peer:", err)
		os.Exit(2)
	}

	var served sync.WaitGroup
	go func() {
		for {
			stream, err := session.AcceptStream()
			if err != nil {
				return
			}
			served.Add(1)
			go func() {
				defer served.Done()
				serve(stream)
			}()
		}
	}()

	out := bufio.NewWriter(os.Stdout)
	if err := runTask(session, *task, *streams, *size); err != nil {
		atomic.StoreInt32(&failed, 1)
		fmt.Fprintf(out, "TASK FAIL %v\n", err)
	} else {
		fmt.Fprintf(out, "TASK ok %d\n", *streams)
	}
	out.Flush()

	// Serve until our side closes the session.
	<-session.CloseChan()
	served.Wait()
	os.Exit(int(atomic.LoadInt32(&failed)))
}
