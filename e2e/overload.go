// e2e/overload.go: many concurrent writes against a member with a small
// in-flight bound, run by test_overload.sh (clientv3 from Debian's
// golang-etcd-server-dev, etcd 3.4).
//
// Usage: overload ENDPOINT N CONNS ROUNDS
//
// N goroutines over CONNS client connections each Put storm/<i>/<r> = v<i>
// for r in 0..ROUNDS-1, one after another; the goroutines are released
// together, so N proposals are in flight at once ROUNDS times over. Every answer must be either success or etcd's
// ErrTooManyRequests (gRPC ResourceExhausted "etcdserver: too many requests",
// as clientv3 sees it); anything else fails. Meanwhile a separate client on
// its own connection keeps doing Range and Put (retrying a Put that is
// refused as too many requests) and must be answered throughout. Afterwards
// every successful Put must be readable with its value and the revision it
// was acknowledged at. Prints counts and latencies (no timing assertions)
// and exits 1 if an invariant fails.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
)

type result struct {
	ok      bool
	refused bool
	rev     int64
	lat     time.Duration
	err     error
}

func isTooMany(err error) bool {
	ev, ok := err.(rpctypes.EtcdError)
	return ok && ev.Code() == codes.ResourceExhausted && ev.Error() == "etcdserver: too many requests" &&
		err == rpctypes.ErrTooManyRequests
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d)-1) * p)
	return d[i]
}

func key(i int) string { return fmt.Sprintf("storm/%07d", i) }

func newClient(ep string) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	return c
}

type other struct {
	ranges, rangeErrs, puts, putRetries, putErrs int64
	maxRange, maxPut                             time.Duration
	duringStorm                                  int64 // ranges and puts started while the storm ran and answered OK
}

// runOther does Range and Put on its own connection until stop is closed.
func runOther(c *clientv3.Client, start, stop, storming chan struct{}, o *other, done *sync.WaitGroup) {
	defer done.Done()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		inStorm := false
		select {
		case <-start:
			inStorm = true
		default:
		}
		select {
		case <-storming:
			inStorm = false
		default:
		}
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Get(ctx, "other/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if d := time.Since(t0); d > o.maxRange {
			o.maxRange = d
		}
		if err != nil {
			o.rangeErrs++
			fmt.Fprintln(os.Stderr, "other range:", err)
		} else {
			o.ranges++
			if inStorm {
				o.duringStorm++
			}
		}
		t0 = time.Now()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = c.Put(ctx, "other/"+strconv.Itoa(i), "x")
			cancel()
			if err == nil || !isTooMany(err) {
				break
			}
			o.putRetries++
			time.Sleep(time.Millisecond)
		}
		if d := time.Since(t0); d > o.maxPut {
			o.maxPut = d
		}
		if err != nil {
			o.putErrs++
			fmt.Fprintln(os.Stderr, "other put:", err)
		} else {
			o.puts++
		}
		if inStorm && err == nil {
			o.duringStorm++
		}
	}
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: overload ENDPOINT N CONNS ROUNDS")
		os.Exit(2)
	}
	ep := os.Args[1]
	n0, _ := strconv.Atoi(os.Args[2])
	conns, _ := strconv.Atoi(os.Args[3])
	rounds, _ := strconv.Atoi(os.Args[4])
	n := n0 * rounds
	clients := make([]*clientv3.Client, conns)
	for i := range clients {
		clients[i] = newClient(ep)
	}
	oc := newClient(ep)

	stop := make(chan struct{})
	start := make(chan struct{})    // closed when the storm begins
	storming := make(chan struct{}) // closed when the storm is over
	var o other
	var owg sync.WaitGroup
	owg.Add(1)
	go runOther(oc, start, stop, storming, &o, &owg)

	res := make([]result, n)
	var wg sync.WaitGroup
	var answered int64
	for g := 0; g < n0; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c := clients[g%conns]
			<-start
			for r := 0; r < rounds; r++ {
				i := g*rounds + r
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				resp, err := c.Put(ctx, key(i), "v"+strconv.Itoa(i))
				cancel()
				x := result{lat: time.Since(t0), err: err}
				switch {
				case err == nil:
					x.ok, x.rev = true, resp.Header.Revision
				case isTooMany(err):
					x.refused = true
				}
				res[i] = x
				atomic.AddInt64(&answered, 1)
			}
		}(g)
	}
	time.Sleep(200 * time.Millisecond) // let the goroutines reach the barrier
	t0 := time.Now()
	close(start)
	wg.Wait()
	storm := time.Since(t0)
	close(storming)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	owg.Wait()

	var okLat, refLat []time.Duration
	okN, refN, otherErr := 0, 0, 0
	for i, r := range res {
		switch {
		case r.ok:
			okN++
			okLat = append(okLat, r.lat)
		case r.refused:
			refN++
			refLat = append(refLat, r.lat)
		default:
			otherErr++
			if otherErr <= 5 {
				fmt.Fprintf(os.Stderr, "%s: unexpected error: %v\n", key(i), r.err)
			}
		}
	}
	failed := false
	fmt.Printf("storm: %d concurrent writers x %d puts over %d connections in %v: %d ok, %d refused (too many requests), %d other errors\n",
		n0, rounds, conns, storm.Round(time.Millisecond), okN, refN, otherErr)
	fmt.Printf("refusal latency: p50 %v p99 %v max %v\n", pct(refLat, 0.5), pct(refLat, 0.99), pct(refLat, 1))
	fmt.Printf("success latency: p50 %v p99 %v max %v\n", pct(okLat, 0.5), pct(okLat, 0.99), pct(okLat, 1))
	fmt.Printf("other client: %d ranges (%d errors, max %v), %d puts (%d refused and retried, %d errors, max %v), %d requests started during the storm answered\n",
		o.ranges, o.rangeErrs, o.maxRange, o.puts, o.putRetries, o.putErrs, o.maxPut, o.duringStorm)
	if otherErr > 0 || okN == 0 || refN == 0 || okN+refN != n {
		fmt.Println("FAIL: every put must succeed or be refused with too many requests, some of each")
		failed = true
	}
	if o.rangeErrs > 0 || o.putErrs > 0 || o.ranges == 0 || o.duringStorm == 0 {
		fmt.Println("FAIL: the separate client was not served during the storm")
		failed = true
	}

	// every acknowledged put is there, at its acknowledged revision
	missing := 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	got, err := oc.Get(ctx, "storm/", clientv3.WithPrefix())
	cancel()
	if err != nil {
		fmt.Println("FAIL: read back:", err)
		os.Exit(1)
	}
	byKey := map[string]int64{}
	vals := map[string]string{}
	for _, kv := range got.Kvs {
		byKey[string(kv.Key)] = kv.ModRevision
		vals[string(kv.Key)] = string(kv.Value)
	}
	for i, r := range res {
		k := key(i)
		rev, present := byKey[k]
		if r.ok && (!present || rev != r.rev || vals[k] != "v"+strconv.Itoa(i)) {
			missing++
		}
		if r.refused && present {
			fmt.Printf("FAIL: %s was refused but is stored\n", k)
			failed = true
		}
	}
	fmt.Printf("read back: %d keys stored, %d acknowledged puts missing or wrong\n", len(got.Kvs), missing)
	if missing > 0 || len(got.Kvs) != okN {
		fmt.Println("FAIL: acknowledged puts must all be readable, refused ones absent")
		failed = true
	}
	for _, c := range clients {
		c.Close()
	}
	oc.Close()
	if failed {
		os.Exit(1)
	}
}
