// e2e/histclient.go: records a history of client operations for the
// linearizability checker (build/lincheck, format in e2e/lincheck/lincheck.c)
// and the watch streams for e2e/watchcheck.py. Run by test_lincheck_crash.sh
// (clientv3 from Debian's golang-etcd-server-dev, etcd 3.4, GOPATH mode).
//
// Usage: histclient ENDPOINTS WORKERS KEYS SECONDS OP_TIMEOUT_MS HISTORY WATCH_PREFIX [STOP_FILE]
//
// WORKERS goroutines, each with its own client on one of the
// comma-separated ENDPOINTS (round-robin), do random linearizable gets,
// puts, deletes and compare-and-set txns ("if value(k) == last value this
// worker saw then put k v", or "if k absent") on KEYS keys lc/k0.. with
// unique values, for SECONDS or until STOP_FILE exists. Every operation is
// logged with its invocation and completion time (one monotonic clock, ns
// since start). A failed get is
// dropped (it had no effect). A failed write is logged with outcome
// "unknown" unless its error certainly comes before the proposal (etcd's
// "too many requests", "request is too large", "key is not provided"); it
// is then dropped too. After an error a worker backs off 50 ms; after a
// write's error it forgets what it knew of that key.
//
// Per endpoint a watch on prefix lc/ from revision 1 writes its events as
// "REV KEY PUT|DELETE VALUE" lines to WATCH_PREFIX.<i>; at the end each
// watcher waits (up to 30 s) until it has seen the endpoint's head revision
// and writes "# head REV" (or "# incomplete ...").
package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	"go.uber.org/zap"
)

var start = time.Now()

func now() int64 { return time.Since(start).Nanoseconds() }

type recorder struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (r *recorder) log(format string, a ...interface{}) {
	r.mu.Lock()
	fmt.Fprintf(r.w, format, a...)
	r.mu.Unlock()
}

// prePropose: errors etcd returns before the request is proposed.
func prePropose(err error) bool {
	return err == rpctypes.ErrTooManyRequests || err == rpctypes.ErrRequestTooLarge || err == rpctypes.ErrEmptyKey
}

func newClient(ep string) *clientv3.Client {
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, LogConfig: &lc})
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	return c
}

var counts [4][3]int64 // op x {ok, unknown, failed}

func count(op, outcome int) { atomic.AddInt64(&counts[op][outcome], 1) }

// worker: one client's state; SEEN is the last value it knows per key ("-":
// absent or not known).
type worker struct {
	id      int
	c       *clientv3.Client
	rnd     *rand.Rand
	seen    []string
	timeout time.Duration
	rec     *recorder
}

var stopped int32

func (w *worker) run(deadline time.Time) {
	for seq := 0; time.Now().Before(deadline) && atomic.LoadInt32(&stopped) == 0; seq++ {
		if err := w.op(seq); err != nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// op: one random operation, logged.
func (w *worker) op(seq int) error {
	id, c, seen := w.id, w.c, w.seen
	k := w.rnd.Intn(len(seen))
	key := fmt.Sprintf("lc/k%d", k)
	val := fmt.Sprintf("w%d.%d", id, seq)
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	call := now()
	var err error
	var line string
	switch p := w.rnd.Intn(100); {
	case p < 40:
		var r *clientv3.GetResponse
		if r, err = c.Get(ctx, key); err == nil {
			seen[k] = "-"
			if len(r.Kvs) > 0 {
				seen[k] = string(r.Kvs[0].Value)
			}
			line = fmt.Sprintf("%d get %s - - %d %d %s\n", id, key, call, now(), seen[k])
		}
		count(0, outcome(err, true))
	case p < 75:
		_, err = c.Put(ctx, key, val)
		line = result(err, fmt.Sprintf("%d put %s %s - %d", id, key, val, call), "ok")
		seen[k] = known(err, val)
		count(1, outcome(err, false))
	case p < 95:
		expect := seen[k]
		cmp := clientv3.Compare(clientv3.Value(key), "=", expect)
		if expect == "-" {
			cmp = clientv3.Compare(clientv3.Version(key), "=", 0)
		}
		var r *clientv3.TxnResponse
		r, err = c.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, val)).Commit()
		res := "false"
		if err == nil && r.Succeeded {
			res, seen[k] = "true", val
		} else if err != nil {
			seen[k] = "-"
		}
		line = result(err, fmt.Sprintf("%d cas %s %s %s %d", id, key, val, expect, call), res)
		count(2, outcome(err, false))
	default:
		var r *clientv3.DeleteResponse
		r, err = c.Delete(ctx, key)
		n := int64(0)
		if r != nil {
			n = r.Deleted
		}
		line = result(err, fmt.Sprintf("%d del %s - - %d", id, key, call), strconv.FormatInt(n, 10))
		seen[k] = "-"
		count(3, outcome(err, false))
	}
	if line != "" {
		w.rec.log("%s", line)
	}
	return err
}

func known(err error, val string) string {
	if err == nil {
		return val
	}
	return "-"
}

// result: the rest of a write's line, "" if it certainly did not happen.
func result(err error, head, res string) string {
	switch {
	case err == nil:
		return fmt.Sprintf("%s %d %s\n", head, now(), res)
	case prePropose(err):
		return ""
	default:
		return head + " unknown ?\n"
	}
}

func outcome(err error, read bool) int {
	switch {
	case err == nil:
		return 0
	case read || prePropose(err):
		return 2
	default:
		return 1
	}
}

// watcher: events on lc/ from revision 1 to PATH until HEAD (set at the end)
// is reached.
func watcher(ep, path string, head *int64, done chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()
	c := newClient(ep)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := c.Watch(ctx, "lc/", clientv3.WithPrefix(), clientv3.WithRev(1))
	var last int64
	var giveUp <-chan time.Time
	for {
		if h := atomic.LoadInt64(head); h > 0 && last >= h {
			fmt.Fprintf(w, "# head %d\n", h)
			return
		}
		select {
		case <-done:
			done = nil
			giveUp = time.After(30 * time.Second)
		case <-giveUp:
			fmt.Fprintf(w, "# incomplete: head %d, last event %d\n", atomic.LoadInt64(head), last)
			return
		case <-time.After(100 * time.Millisecond):
		case resp, ok := <-wch:
			if !ok {
				fmt.Fprintf(w, "# incomplete: watch channel closed at %d\n", last)
				return
			}
			if err := resp.Err(); err != nil {
				fmt.Fprintf(w, "# watch error: %v\n", err)
			}
			for _, ev := range resp.Events {
				typ := "PUT"
				if ev.Type == clientv3.EventTypeDelete {
					typ = "DELETE"
				}
				val := string(ev.Kv.Value)
				if val == "" {
					val = "-"
				}
				fmt.Fprintf(w, "%d %s %s %s\n", ev.Kv.ModRevision, ev.Kv.Key, typ, val)
				last = ev.Kv.ModRevision
			}
		}
	}
}

// headRevision: the endpoint's current revision, retried until it answers.
func headRevision(ep string) int64 {
	c := newClient(ep)
	defer c.Close()
	for i := 0; i < 60; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := c.Get(ctx, "lc/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			return r.Header.Revision
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "cannot read the head revision of", ep)
	return 0
}

func main() {
	if len(os.Args) != 8 && len(os.Args) != 9 {
		fmt.Fprintln(os.Stderr, "usage: histclient ENDPOINTS WORKERS KEYS SECONDS OP_TIMEOUT_MS HISTORY WATCH_PREFIX [STOP_FILE]")
		os.Exit(2)
	}
	eps := strings.Split(os.Args[1], ",")
	nw, _ := strconv.Atoi(os.Args[2])
	nkeys, _ := strconv.Atoi(os.Args[3])
	secs, _ := strconv.ParseFloat(os.Args[4], 64)
	tmo, _ := strconv.Atoi(os.Args[5])
	hf, err := os.Create(os.Args[6])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rec := &recorder{w: bufio.NewWriter(hf)}
	rec.log("# histclient: %d workers on %s, %d keys, %.1f s, op timeout %d ms\n", nw, os.Args[1], nkeys, secs, tmo)

	heads := make([]int64, len(eps))
	done := make(chan struct{})
	var wwg sync.WaitGroup
	for i, ep := range eps {
		wwg.Add(1)
		go watcher(ep, fmt.Sprintf("%s.%d", os.Args[7], i), &heads[i], done, &wwg)
	}
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var wg sync.WaitGroup
	if len(os.Args) == 9 {
		go func() {
			for ; ; time.Sleep(100 * time.Millisecond) {
				if _, err := os.Stat(os.Args[8]); err == nil {
					atomic.StoreInt32(&stopped, 1)
					return
				}
			}
		}()
	}
	for i := 0; i < nw; i++ {
		w := &worker{id: i, c: newClient(eps[i%len(eps)]), seen: make([]string, nkeys),
			rnd:     rand.New(rand.NewSource(int64(i)*7919 + time.Now().UnixNano())),
			timeout: time.Duration(tmo) * time.Millisecond, rec: rec}
		for k := range w.seen {
			w.seen[k] = "-"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.c.Close()
			w.run(deadline)
		}()
	}
	wg.Wait()
	rec.mu.Lock()
	rec.w.Flush()
	hf.Close()
	rec.mu.Unlock()
	for i, ep := range eps {
		atomic.StoreInt64(&heads[i], headRevision(ep))
	}
	close(done)
	wwg.Wait()
	names := []string{"get", "put", "cas", "del"}
	for op, c := range counts {
		fmt.Printf("%s: %d ok, %d unknown, %d failed\n", names[op], c[0], c[1], c[2])
	}
}
