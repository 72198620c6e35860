// scale.go: the client side of bench/scale.sh (issue 10's memory rows).
//
//	scale conns    -endpoint E -n N             N idle client connections
//	scale watchers -endpoint E -n W -streams S  W watchers over S streams
//
// Each mode opens what it is asked for, makes sure it is really up (every
// connection has answered a Get; every watcher has its created response),
// prints "READY <n>" and then holds it all until stdin is closed, so the
// script can read the server's memory while the load is standing.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"google.golang.org/grpc/metadata"
)

func dial(ep string) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 20 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	return c
}

func conns(ep string, n int) {
	clients := make([]*clientv3.Client, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var failed int32
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c := dial(ep)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := c.Get(ctx, "scale-probe")
			cancel()
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
			clients[i] = c
		}(i)
	}
	wg.Wait()
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d of %d connections failed their Get\n", failed, n)
		os.Exit(1)
	}
	fmt.Printf("READY %d\n", n)
	io.Copy(io.Discard, os.Stdin)
	for _, c := range clients {
		c.Close()
	}
}

func watchers(ep string, n, streams int) {
	c := dial(ep)
	defer c.Close()
	var wg sync.WaitGroup
	per := (n + streams - 1) / streams
	for s := 0; s < streams; s++ {
		// clientv3 shares one gRPC stream among the watchers of one
		// context's metadata: a distinct value per stream splits them.
		ctx := metadata.AppendToOutgoingContext(context.Background(), "scale-stream", fmt.Sprint(s))
		for w := 0; w < per && s*per+w < n; w++ {
			wg.Add(1)
			key := fmt.Sprintf("/scale/%d/%d", s, w)
			ch := c.Watch(ctx, key, clientv3.WithCreatedNotify())
			go func() {
				defer wg.Done()
				<-ch // the created notification
			}()
		}
	}
	wg.Wait()
	fmt.Printf("READY %d\n", n)
	io.Copy(io.Discard, os.Stdin)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: scale conns|watchers -endpoint E -n N [-streams S]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	ep := fs.String("endpoint", "127.0.0.1:2379", "")
	n := fs.Int("n", 1000, "")
	streams := fs.Int("streams", 100, "")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "conns":
		conns(*ep, *n)
	case "watchers":
		watchers(*ep, *n, *streams)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
