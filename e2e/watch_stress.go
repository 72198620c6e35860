// e2e/watch_stress.go: the watch stress check run by test_watch_stress.sh.
//
// Usage: watch_stress ENDPOINT OPS WATCHERS. Preloads OPS/10 writes, opens
// WATCHERS watches on overlapping ranges (whole prefix, first-level and
// second-level prefixes, ranges, single keys; some with prev_kv, half of
// them replaying from revision 2, i.e. catching up from storage while
// writes go on) spread over 4 client connections and 40 streams, then runs
// the remaining writes (puts, single and prefix deletes, txns of several
// puts and a delete) from 32 goroutines. Every write's revision and exact
// changes come back in its response, which gives an independent reference
// history; each watcher must receive exactly the events of its range from
// its start revision, in revision order, with the right values (and
// prev_kv), none missing, none duplicated. Prints a summary and exits 1 on
// any mismatch.
package main

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"google.golang.org/grpc"
)

// slowConsumer: a raw Watch stream that reads nothing while n puts of
// 8 KiB values are written (far more than the HTTP/2 windows and the
// server's per-stream bound), then reads: the server must have parked the
// watcher and caught it up from storage, with every revision exactly once.
func slowConsumer(cli *clientv3.Client, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx,
		grpc.MaxCallRecvMsgSize(math.MaxInt32)) // as clientv3 does: catch-up responses hold up to 1000 revisions
	if err != nil {
		fmt.Println("FATAL: slow watch:", err)
		os.Exit(1)
	}
	err = stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
		CreateRequest: &pb.WatchCreateRequest{Key: []byte("/slow/"), RangeEnd: []byte("/slow0")}}})
	if err != nil {
		fmt.Println("FATAL: slow watch create:", err)
		os.Exit(1)
	}
	created, err := stream.Recv()
	if err != nil || !created.Created {
		fmt.Println("FATAL: slow watch not created:", err)
		os.Exit(1)
	}
	val := make([]byte, 8192)
	revs := map[int64]bool{}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		resp, err := cli.Put(context.Background(), fmt.Sprintf("/slow/%d", i%50), string(val))
		if err != nil {
			fmt.Println("FATAL: slow put:", err)
			os.Exit(1)
		}
		revs[resp.Header.Revision] = true
	}
	tw := time.Since(t0)
	var last int64
	got, responses := 0, 0
	for got < n {
		resp, err := stream.Recv()
		if err != nil {
			fmt.Println("FAIL: slow consumer:", err)
			failed = true
			return
		}
		responses++
		for _, e := range resp.Events {
			if e.Kv.ModRevision <= last || !revs[e.Kv.ModRevision] {
				fmt.Printf("FAIL: slow consumer: revision %d after %d (written: %v)\n", e.Kv.ModRevision, last, revs[e.Kv.ModRevision])
				failed = true
				return
			}
			last = e.Kv.ModRevision
			got++
		}
	}
	fmt.Printf("slow consumer: %d events (%d MiB) in %d responses, writes took %.1fs, all read %.1fs\n",
		got, got*8192>>20, responses, tw.Seconds(), time.Since(t0).Seconds())
}

var failed bool

type ev struct {
	rev     int64
	sub     int
	del     bool
	key     string
	value   string
	prevVal string
	prevRev int64 // 0: no prev
}

type watcher struct {
	id       int
	key, end string // end "": single key
	prev     bool
	start    int64 // first revision it must see (set at created)
	mu       sync.Mutex
	n        int    // events received
	sum      uint64 // running FNV-1a of the received events (canonical form)
	lastRev  int64
	disorder int // events older than the previous one
	created  chan struct{}
}

// fold adds one event to a running FNV-1a hash (events are not kept: 100,000
// writes times 1,000 watchers would not fit in memory).
func fold(sum uint64, e *ev, withPrev bool) uint64 {
	if sum == 0 {
		sum = 14695981039346656037
	}
	var buf [256]byte
	b := strconv.AppendInt(buf[:0], e.rev, 10)
	if e.del {
		b = append(b, 'D')
	} else {
		b = append(b, 'P')
	}
	b = append(b, e.key...)
	b = append(b, 0)
	if !e.del {
		b = append(b, e.value...)
	}
	if withPrev {
		b = append(b, 0)
		b = strconv.AppendInt(b, e.prevRev, 10)
		b = append(b, e.prevVal...)
	}
	for _, c := range b {
		sum ^= uint64(c)
		sum *= 1099511628211
	}
	return sum
}

func (w *watcher) contains(k string) bool {
	if w.end == "" {
		return k == w.key
	}
	return k >= w.key && k < w.end
}

var (
	logMu   sync.Mutex
	history []ev // from write responses
)

func record(evs []ev) {
	logMu.Lock()
	history = append(history, evs...)
	logMu.Unlock()
}

func keyName(a, b, n int) string { return fmt.Sprintf("/s/%d/%d/%02d", a, b, n) }

func randKey(r *rand.Rand) string { return keyName(r.Intn(10), r.Intn(10), r.Intn(20)) }

func doOp(cli *clientv3.Client, r *rand.Rand, seq int) error {
	ctx := context.Background()
	x := r.Intn(100)
	switch {
	case x < 60:
		k := randKey(r)
		v := "v" + strconv.Itoa(seq)
		resp, err := cli.Put(ctx, k, v)
		if err != nil {
			return err
		}
		record([]ev{{rev: resp.Header.Revision, key: k, value: v}})
	case x < 80:
		k := randKey(r)
		resp, err := cli.Delete(ctx, k, clientv3.WithPrevKV())
		if err != nil {
			return err
		}
		for i, p := range resp.PrevKvs {
			record([]ev{{rev: resp.Header.Revision, sub: i, del: true, key: string(p.Key)}})
		}
	case x < 85:
		p := fmt.Sprintf("/s/%d/%d/", r.Intn(10), r.Intn(10))
		resp, err := cli.Delete(ctx, p, clientv3.WithPrefix(), clientv3.WithPrevKV())
		if err != nil {
			return err
		}
		var evs []ev
		for i, pk := range resp.PrevKvs {
			evs = append(evs, ev{rev: resp.Header.Revision, sub: i, del: true, key: string(pk.Key)})
		}
		record(evs)
	default:
		// 3 puts and a delete, all on distinct keys
		keys := map[string]bool{}
		for len(keys) < 4 {
			keys[randKey(r)] = true
		}
		var ks []string
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		r.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
		v := "t" + strconv.Itoa(seq)
		ops := []clientv3.Op{
			clientv3.OpPut(ks[0], v), clientv3.OpPut(ks[1], v), clientv3.OpPut(ks[2], v),
			clientv3.OpDelete(ks[3], clientv3.WithPrevKV()),
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return err
		}
		rev := resp.Header.Revision
		evs := []ev{{rev: rev, sub: 0, key: ks[0], value: v}, {rev: rev, sub: 1, key: ks[1], value: v},
			{rev: rev, sub: 2, key: ks[2], value: v}}
		if d := resp.Responses[3].GetResponseDeleteRange(); d != nil && len(d.PrevKvs) == 1 {
			evs = append(evs, ev{rev: rev, sub: 3, del: true, key: ks[3]})
		}
		record(evs)
	}
	return nil
}

func runWrites(clis []*clientv3.Client, ops int, base int) {
	var next int64 = int64(base)
	end := int64(base + ops)
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g*7919 + base)))
			cli := clis[g%len(clis)]
			for {
				seq := atomic.AddInt64(&next, 1)
				if seq > end {
					return
				}
				if err := doOp(cli, r, int(seq)); err != nil {
					fmt.Println("FATAL: write:", err)
					os.Exit(1)
				}
			}
		}(g)
	}
	wg.Wait()
}

func consume(w *watcher, ch clientv3.WatchChan) {
	for resp := range ch {
		if resp.Created {
			if w.start == 0 {
				w.start = resp.Header.Revision + 1
			}
			close(w.created)
			continue
		}
		if resp.Err() != nil {
			fmt.Printf("FAIL: watcher %d: %v\n", w.id, resp.Err())
			return
		}
		w.mu.Lock()
		for _, e := range resp.Events {
			x := ev{rev: e.Kv.ModRevision, del: e.Type == mvccpb.DELETE, key: string(e.Kv.Key),
				value: string(e.Kv.Value)}
			if e.PrevKv != nil {
				x.prevVal = string(e.PrevKv.Value)
				x.prevRev = e.PrevKv.ModRevision
			}
			if x.rev < w.lastRev {
				w.disorder++
			}
			w.lastRev = x.rev
			w.n++
			w.sum = fold(w.sum, &x, w.prev)
		}
		w.mu.Unlock()
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Println("usage: watch_stress ENDPOINT OPS WATCHERS")
		os.Exit(2)
	}
	ops, _ := strconv.Atoi(os.Args[2])
	nw, _ := strconv.Atoi(os.Args[3])
	var clis []*clientv3.Client
	for i := 0; i < 4; i++ {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second,
			MaxCallRecvMsgSize: 64 << 20})
		if err != nil {
			fmt.Println("FATAL:", err)
			os.Exit(1)
		}
		defer c.Close()
		clis = append(clis, c)
	}
	t0 := time.Now()
	pre := ops / 10
	runWrites(clis, pre, 0)
	tPre := time.Since(t0)

	// watchers: overlapping ranges over 40 streams (one context each)
	r := rand.New(rand.NewSource(42))
	var ctxs []context.Context
	var cancels []context.CancelFunc
	for i := 0; i < 40; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs = append(ctxs, ctx)
		cancels = append(cancels, cancel)
	}
	ws := make([]*watcher, nw)
	for i := range ws {
		w := &watcher{id: i, created: make(chan struct{}), prev: i%3 == 0}
		switch k := i % 10; {
		case i%100 == 0:
			w.key, w.end = "/s/", "/s0"
		case k < 2:
			a := r.Intn(10)
			w.key, w.end = fmt.Sprintf("/s/%d/", a), fmt.Sprintf("/s/%d0", a)
		case k < 6:
			a, b := r.Intn(10), r.Intn(10)
			w.key, w.end = fmt.Sprintf("/s/%d/%d/", a, b), fmt.Sprintf("/s/%d/%d0", a, b)
		case k < 8:
			a := r.Intn(8)
			w.key, w.end = fmt.Sprintf("/s/%d/", a), fmt.Sprintf("/s/%d/", a+2)
		default:
			w.key = randKey(r)
		}
		opts := []clientv3.OpOption{clientv3.WithCreatedNotify()}
		if w.end != "" {
			opts = append(opts, clientv3.WithRange(w.end))
		}
		if w.prev {
			opts = append(opts, clientv3.WithPrevKV())
		}
		if i%2 == 0 {
			w.start = 2
			opts = append(opts, clientv3.WithRev(2))
		}
		ws[i] = w
		go consume(w, clis[i%4].Watch(ctxs[i%40], w.key, opts...))
	}
	for _, w := range ws {
		select {
		case <-w.created:
		case <-time.After(30 * time.Second):
			fmt.Printf("FATAL: watcher %d not created\n", w.id)
			os.Exit(1)
		}
	}
	tW := time.Since(t0)
	runWrites(clis, ops-pre, pre)
	tWrites := time.Since(t0)

	// the reference: every change, in (revision, sub) order, with prev
	sort.Slice(history, func(i, j int) bool {
		if history[i].rev != history[j].rev {
			return history[i].rev < history[j].rev
		}
		return history[i].sub < history[j].sub
	})
	type st struct {
		val string
		rev int64
	}
	state := map[string]st{}
	for i := range history {
		e := &history[i]
		if p, ok := state[e.key]; ok {
			e.prevVal, e.prevRev = p.val, p.rev
		}
		if e.del {
			delete(state, e.key)
		} else {
			state[e.key] = st{e.value, e.rev}
		}
	}
	lastRev := history[len(history)-1].rev
	wantN := make([]int, nw)
	wantSum := make([]uint64, nw)
	total := 0
	for i, w := range ws {
		for j := range history {
			e := &history[j]
			if e.rev >= w.start && w.contains(e.key) {
				wantN[i]++
				wantSum[i] = fold(wantSum[i], e, w.prev)
			}
		}
		total += wantN[i]
	}
	// wait for delivery
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := true
		for i, w := range ws {
			w.mu.Lock()
			n := w.n
			w.mu.Unlock()
			if n < wantN[i] {
				done = false
				break
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // extra events would show up now
	tAll := time.Since(t0)
	bad := 0
	for i, w := range ws {
		w.mu.Lock()
		msg := ""
		switch {
		case w.disorder > 0:
			msg = fmt.Sprintf("%d events out of revision order", w.disorder)
		case w.n != wantN[i]:
			msg = fmt.Sprintf("got %d events, want %d", w.n, wantN[i])
		case w.sum != wantSum[i]:
			msg = "same number of events but different contents (key, value, type, revision or prev_kv)"
		}
		w.mu.Unlock()
		if msg != "" {
			bad++
			if bad <= 10 {
				fmt.Printf("FAIL: watcher %d [%s,%s) start %d prev %v: %s\n", w.id, w.key, w.end, w.start, w.prev, msg)
			}
		}
	}
	for _, c := range cancels {
		c()
	}
	fmt.Printf("ops %d revisions %d watchers %d events delivered %d; preload %.1fs, watchers created %.1fs, writes done %.1fs, all delivered %.1fs; %.0f writes/s, %.0f events/s\n",
		ops, lastRev, nw, total, tPre.Seconds(), tW.Seconds(), tWrites.Seconds(), tAll.Seconds(),
		float64(ops-pre)/(tWrites-tW).Seconds(), float64(total)/(tAll-tW).Seconds())
	if bad > 0 {
		fmt.Printf("%d of %d watchers wrong\n", bad, nw)
		os.Exit(1)
	}
	slowConsumer(clis[0], 3000)
	if failed {
		os.Exit(1)
	}
}
