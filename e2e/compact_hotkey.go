// e2e/compact_hotkey.go: a hot key under compaction, through clientv3
// (Debian's golang-etcd-server-dev, etcd 3.4). Used by
// e2e/test_compact_hotkey.sh (mode check, a transcript compared with real
// etcd) and bench/compact_hotkey.sh (mode bench, timings).
//
// Usage: compact_hotkey ENDPOINT check|bench VERSIONS OTHERS
//
// Both modes first write VERSIONS-1 versions of the key "hot" (32 writers at
// once), then OTHERS other keys "other/NNNNNN" (likewise), then one last
// put of "hot" with a known value, then put and delete "gone", and compact
// at that head revision (the delete) with physical=true.
//
// check: while the compaction runs, 20 puts to "during/NN" are issued one
// after the other; afterwards it prints a transcript without ids or
// timings: the compact revision, what a watch from the compact revision sees
// of "gone" (only a later put: the tombstone is physically gone once a
// physical Compact is answered), the error of a read at compact-1, the hot
// key's version fields, a digest of the other keys and of the puts made
// during the compaction. Exits 1 if a call that must succeed fails.
//
// bench: while the compaction runs, one client puts ("bench/put") and
// another ranges (alternately the hot key and one other key) in closed
// loops; prints one line "compact_ms=... compact=ok|"error" puts=...
// put_errors=... put_p50_ms=... put_p99_ms=... put_max_ms=... ranges=...
// range_errors=... range_p99_ms=... range_max_ms=... load_s=..." for the
// requests that ran during the compaction (a failed request counts with
// the time it took).
package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func must(err error, what string) {
	if err != nil {
		fmt.Printf("FATAL: %s: %v\n", what, err)
		os.Exit(1)
	}
}

func connect(ep string) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	must(err, "connect")
	return c
}

// load writes the hot key versions, then the other keys, each phase with 32
// writers, then one last put of the hot key.
func load(c *clientv3.Client, versions, others int) {
	parallel(versions-1, func(i int64) (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = c.Put(ctx, "hot", fmt.Sprintf("v%06d", i))
		return err
	})
	parallel(others, func(j int64) (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = c.Put(ctx, fmt.Sprintf("other/%06d", j), fmt.Sprintf("value-%06d", j))
		return err
	})
	_, err := c.Put(context.Background(), "hot", "final")
	must(err, "last hot put")
	// the head revision is a delete: its tombstone goes only physically
	_, err = c.Put(context.Background(), "gone", "g")
	must(err, "put gone")
	_, err = c.Delete(context.Background(), "gone")
	must(err, "delete gone")
}

// parallel runs fn(0..n-1) on 32 goroutines.
func parallel(n int, fn func(i int64) error) {
	var next int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1) - 1
				if i >= int64(n) {
					return
				}
				must(fn(i), "load put")
			}
		}()
	}
	wg.Wait()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000.0 }

func pct(v []time.Duration, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	i := int(p*float64(len(v))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(v) {
		i = len(v) - 1
	}
	return ms(v[i])
}

func check(ep string, versions, others int) {
	c := connect(ep)
	defer c.Close()
	load(c, versions, others)
	ctx := context.Background()
	head, err := c.Get(ctx, "hot")
	must(err, "get hot")
	rev := head.Header.Revision
	fmt.Printf("head revision %d (versions %d, others %d)\n", rev, versions, others)
	done := make(chan error, 1)
	var compactHdr int64
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 120*time.Second)
		defer cancel()
		resp, err := c.Compact(cctx, rev, clientv3.WithCompactPhysical())
		if err == nil {
			compactHdr = resp.Header.Revision
		}
		done <- err
	}()
	for i := 0; i < 20; i++ {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p, err := c.Put(pctx, fmt.Sprintf("during/%02d", i), "d")
		cancel()
		must(err, "put during compaction")
		if i == 0 || i == 19 {
			fmt.Printf("put during/%02d: revision %d\n", i, p.Header.Revision)
		}
	}
	must(<-done, "compact physical")
	fmt.Printf("compact %d physical: ok\n", rev)
	_ = compactHdr // depends on how many puts the compaction overlapped
	// Answered after the physical work: the tombstone at the compact
	// revision is gone, so a watch from there sees only the later put.
	wctx, wcancel := context.WithCancel(ctx)
	wch := c.Watch(wctx, "gone", clientv3.WithRev(rev))
	_, err = c.Put(ctx, "gone", "again")
	must(err, "put gone again")
	for seen := false; !seen; {
		wr, ok := <-wch
		if !ok {
			fmt.Printf("FATAL: watch gone ended: %v\n", wr.Err())
			os.Exit(1)
		}
		must(wr.Err(), "watch gone")
		for _, ev := range wr.Events {
			fmt.Printf("watch gone from %d: %s %s mod=%d\n", rev, ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
			seen = seen || ev.Type == clientv3.EventTypePut
		}
	}
	wcancel()
	_, err = c.Get(ctx, "hot", clientv3.WithRev(rev-1))
	fmt.Printf("get hot at %d: %v\n", rev-1, err)
	_, err = c.Compact(ctx, rev)
	fmt.Printf("compact %d again: %v\n", rev, err)
	g, err := c.Get(ctx, "hot", clientv3.WithRev(rev))
	must(err, "get hot at the compact revision")
	for _, kv := range g.Kvs {
		fmt.Printf("hot at %d: value=%s version=%d create=%d mod=%d\n", rev, kv.Value, kv.Version,
			kv.CreateRevision, kv.ModRevision)
	}
	o, err := c.Get(ctx, "other/", clientv3.WithPrefix())
	must(err, "get others")
	h := sha256.New()
	for _, kv := range o.Kvs {
		// revisions depend on how the 32 writers interleaved: only their shape
		fmt.Fprintf(h, "%s=%s %d %v\n", kv.Key, kv.Value, kv.Version, kv.CreateRevision == kv.ModRevision)
	}
	fmt.Printf("others: count=%d digest=%x\n", o.Count, h.Sum(nil)[:8])
	d, err := c.Get(ctx, "during/", clientv3.WithPrefix())
	must(err, "get during")
	h = sha256.New()
	for _, kv := range d.Kvs {
		fmt.Fprintf(h, "%s=%s %d\n", kv.Key, kv.Value, kv.ModRevision)
	}
	fmt.Printf("during: count=%d digest=%x revision=%d\n", d.Count, h.Sum(nil)[:8], d.Header.Revision)
	cnt, err := c.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	must(err, "count all")
	fmt.Printf("all keys: %d\n", cnt.Count)
}

func bench(ep string, versions, others int) {
	c := connect(ep)
	defer c.Close()
	t0 := time.Now()
	load(c, versions, others)
	loadS := time.Since(t0).Seconds()
	ctx := context.Background()
	head, err := c.Get(ctx, "hot")
	must(err, "get hot")
	rev := head.Header.Revision
	// the other client: its own connection, a put loop and a range loop
	o := connect(ep)
	defer o.Close()
	var stop int32
	var mu sync.Mutex
	var puts, ranges []time.Duration
	var putErrs, rangeErrs int
	var wg sync.WaitGroup
	var started int32
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; atomic.LoadInt32(&stop) == 0; i++ {
			s := time.Now()
			pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			_, err := o.Put(pctx, "bench/put", strconv.Itoa(i))
			cancel()
			if atomic.LoadInt32(&started) == 1 {
				mu.Lock()
				puts = append(puts, time.Since(s))
				if err != nil {
					putErrs++
				}
				mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; atomic.LoadInt32(&stop) == 0; i++ {
			key := "hot"
			if i%2 == 1 {
				key = fmt.Sprintf("other/%06d", i%others)
			}
			s := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			_, err := o.Get(rctx, key)
			cancel()
			if atomic.LoadInt32(&started) == 1 {
				mu.Lock()
				ranges = append(ranges, time.Since(s))
				if err != nil {
					rangeErrs++
				}
				mu.Unlock()
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	atomic.StoreInt32(&started, 1)
	s := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 600*time.Second)
	_, err = c.Compact(cctx, rev, clientv3.WithCompactPhysical())
	cancel()
	dur := time.Since(s)
	atomic.StoreInt32(&started, 0)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	var pmax, rmax time.Duration
	for _, d := range puts {
		if d > pmax {
			pmax = d
		}
	}
	for _, d := range ranges {
		if d > rmax {
			rmax = d
		}
	}
	np, nr := len(puts), len(ranges)
	compactErr := "ok"
	if err != nil {
		compactErr = strconv.Quote(err.Error())
	}
	fmt.Printf("compact_ms=%.1f compact=%s puts=%d put_errors=%d put_p50_ms=%.2f put_p99_ms=%.2f put_max_ms=%.2f ranges=%d range_errors=%d range_p99_ms=%.2f range_max_ms=%.2f load_s=%.1f\n",
		ms(dur), compactErr, np, putErrs, pct(puts, 0.50), pct(puts, 0.99), ms(pmax), nr, rangeErrs, pct(ranges, 0.99), ms(rmax), loadS)
}

func main() {
	if len(os.Args) != 5 {
		fmt.Println("usage: compact_hotkey ENDPOINT check|bench VERSIONS OTHERS")
		os.Exit(2)
	}
	versions, err := strconv.Atoi(os.Args[3])
	must(err, "VERSIONS")
	others, err := strconv.Atoi(os.Args[4])
	must(err, "OTHERS")
	if versions < 1 || others < 1 {
		fmt.Println("VERSIONS and OTHERS must be >= 1")
		os.Exit(2)
	}
	switch os.Args[2] {
	case "check":
		check(os.Args[1], versions, others)
	case "bench":
		bench(os.Args[1], versions, others)
	default:
		fmt.Println("mode must be check or bench")
		os.Exit(2)
	}
}
