// e2e/watch_kube.go: kube-apiserver's watch pattern through clientv3 (Debian's
// golang-etcd-server-dev, etcd 3.4), run by test_watch_kube.sh against real
// etcd and kshimd; both transcripts must be identical.
//
// Usage: watch_kube ENDPOINT. Prints one transcript (no ids, no times) and
// exits 1 if an invariant kube relies on is broken:
//   - a prefix watch with prevKV and progress notify from rev+1 after a list,
//     several watches sharing one gRPC stream (one context);
//   - every event that is not a create carries prev_kv; a create is
//     create_revision == mod_revision;
//   - all events of a txn arrive in one response;
//   - RequestProgress: a progress response (no events, header revision =
//     the current revision) reaches the watchers of the stream;
//   - progress_notify at the server's interval (1 s in the test);
//   - compaction, then a re-watch from a compacted revision gets
//     ErrCompacted with the compact revision; a re-watch from exactly the
//     compact revision replays;
//   - NOPUT filter, cancel by closing the context.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
	"go.etcd.io/etcd/mvcc/mvccpb"
)

var failed bool
var lastEvents int

func failf(format string, a ...interface{}) {
	failed = true
	fmt.Printf("FAIL: "+format+"\n", a...)
}

func must(err error, what string) {
	if err != nil {
		fmt.Printf("FATAL: %s: %v\n", what, err)
		os.Exit(1)
	}
}

// rec collects one watcher's responses as text.
type rec struct {
	mu       sync.Mutex
	name     string
	lines    []string
	progress int
	events   int
	lastRev  int64
}

func (r *rec) add(s string) {
	r.mu.Lock()
	r.lines = append(r.lines, s)
	r.mu.Unlock()
}

func kvText(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%s=%q c%d m%d v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}

// consume reads ch until it closes; progress responses are counted, not
// recorded (their number depends on timing).
func consume(r *rec, ch clientv3.WatchChan, wantPrev bool, done chan struct{}) {
	defer close(done)
	for resp := range ch {
		if err := resp.Err(); err != nil {
			r.add(fmt.Sprintf("err %v compact=%d canceled=%v", err, resp.CompactRevision, resp.Canceled))
			if resp.Canceled {
				continue
			}
		}
		if resp.IsProgressNotify() {
			r.mu.Lock()
			r.progress++
			r.mu.Unlock()
			continue
		}
		if len(resp.Events) == 0 {
			continue
		}
		parts := []string{fmt.Sprintf("hdr%d", resp.Header.Revision)}
		rev := resp.Events[0].Kv.ModRevision
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision < r.lastRev {
				failf("%s: revision %d after %d", r.name, ev.Kv.ModRevision, r.lastRev)
			}
			r.lastRev = ev.Kv.ModRevision
			t := "PUT"
			if ev.Type == mvccpb.DELETE {
				t = "DEL"
			}
			s := t + " " + kvText(ev.Kv)
			isCreate := ev.Type == mvccpb.PUT && ev.Kv.CreateRevision == ev.Kv.ModRevision
			if ev.PrevKv != nil {
				s += " prev(" + kvText(ev.PrevKv) + ")"
			} else if wantPrev && !isCreate {
				failf("%s: event without prev_kv: %s", r.name, s)
			}
			parts = append(parts, s)
		}
		if resp.Header.Revision < rev {
			failf("%s: header revision %d below event revision %d", r.name, resp.Header.Revision, rev)
		}
		r.mu.Lock()
		r.events += len(resp.Events)
		r.mu.Unlock()
		r.add(strings.Join(parts, " | "))
	}
	r.add("closed")
}

// rawStream drives one Watch stream with raw WatchRequests and prints every
// response field a client can see except cluster/member ids and the term:
// server-assigned ids (etcd 3.4 starts at 0), a client-chosen id and its
// duplicate, cancel of a known and an unknown id, progress_request, a
// failed create (empty range), and fragmentation of a delete whose prev_kvs
// exceed --max-request-bytes.
func rawStream(cli *clientv3.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(1<<30))
	must(err, "raw watch")
	send := func(req *pb.WatchRequest) { must(stream.Send(req), "raw send") }
	create := func(c *pb.WatchCreateRequest) {
		send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
	}
	recv := func(what string) {
		resp, err := stream.Recv()
		must(err, "raw recv "+what)
		lastEvents = len(resp.Events)
		fmt.Printf("raw %s: rev=%d id=%d created=%v canceled=%v compact=%d reason=%q fragment=%v events=%d\n",
			what, resp.Header.Revision, resp.WatchId, resp.Created, resp.Canceled, resp.CompactRevision,
			resp.CancelReason, resp.Fragment, len(resp.Events))
	}
	create(&pb.WatchCreateRequest{Key: []byte("/raw/a")})
	recv("create 1")
	create(&pb.WatchCreateRequest{Key: []byte("/raw/"), RangeEnd: []byte("/raw0"), PrevKv: true, Fragment: true})
	recv("create 2")
	create(&pb.WatchCreateRequest{Key: []byte("/raw/b"), WatchId: 100})
	recv("create id 100")
	create(&pb.WatchCreateRequest{Key: []byte("/raw/c"), WatchId: 100})
	recv("create duplicate id")
	create(&pb.WatchCreateRequest{Key: []byte("/raw/z"), RangeEnd: []byte("/raw/a")})
	recv("create empty range")
	create(&pb.WatchCreateRequest{Key: []byte("/raw/d")})
	recv("create after failures")
	send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
	recv("progress")
	send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 0}}})
	recv("cancel 0")
	send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 77}}})
	_, err = cli.Put(context.Background(), "/raw/b", "x")
	must(err, "raw put")
	// watchers 1 and 100 both match; etcd's order between watchers is not
	// defined, so print the two in id order (and no reply to cancel 77)
	var lines []string
	for i := 0; i < 2; i++ {
		resp, err := stream.Recv()
		must(err, "raw recv put")
		lines = append(lines, fmt.Sprintf("raw put /raw/b: rev=%d id=%d events=%d", resp.Header.Revision,
			resp.WatchId, len(resp.Events)))
	}
	sort.Strings(lines)
	fmt.Println(strings.Join(lines, "\n"))
	cancel()

	// fragments: 250 values of 10 KiB written first, then a fresh stream
	// watches them with prev_kv and fragment, and one delete removes them
	// all: 2.5 MB of prev_kvs in one revision, more than etcd's limit of
	// --max-request-bytes + 512 KiB (2 MiB)
	val := strings.Repeat("v", 10240)
	for i := 0; i < 250; i++ {
		_, err = cli.Put(context.Background(), fmt.Sprintf("/raw/f/%03d", i), val)
		must(err, "raw put")
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	stream, err = pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx2, grpc.MaxCallRecvMsgSize(1<<30))
	must(err, "raw watch 2")
	create(&pb.WatchCreateRequest{Key: []byte("/raw/f/"), RangeEnd: []byte("/raw/f0"), PrevKv: true, Fragment: true})
	recv("create fragment watcher")
	_, err = cli.Delete(context.Background(), "/raw/f/", clientv3.WithPrefix())
	must(err, "raw delete")
	total := 0
	for total < 250 {
		recv("delete fragment")
		total += lastEvents
	}
	if total != 250 {
		failf("raw: %d delete events, want 250", total)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: watch_kube ENDPOINT")
		os.Exit(2)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second})
	must(err, "connect")
	defer cli.Close()
	bg := context.Background()
	put := func(k, v string) int64 {
		r, err := cli.Put(bg, k, v)
		must(err, "put "+k)
		return r.Header.Revision
	}
	for _, p := range []string{"a", "b", "c"} {
		put("/registry/pods/ns/"+p, "v1-"+p)
	}
	put("/registry/services/ns/s1", "svc")
	// the apiserver lists, then watches from the list revision + 1
	list, err := cli.Get(bg, "/registry/pods/", clientv3.WithPrefix())
	must(err, "list")
	listRev := list.Header.Revision
	fmt.Printf("list rev=%d count=%d\n", listRev, list.Count)

	// one stream: the same context (kube's watch cache requires a leader)
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(bg))
	recs := map[string]*rec{}
	dones := map[string]chan struct{}{}
	watch := func(name string, ctx context.Context, key string, prev bool, opts ...clientv3.OpOption) {
		r := &rec{name: name}
		recs[name] = r
		d := make(chan struct{})
		dones[name] = d
		go consume(r, cli.Watch(ctx, key, opts...), prev, d)
	}
	watch("pods", wctx, "/registry/pods/", true, clientv3.WithPrefix(), clientv3.WithRev(listRev+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	watch("services", wctx, "/registry/services/", true, clientv3.WithPrefix(), clientv3.WithRev(listRev+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	watch("pod-a", wctx, "/registry/pods/ns/a", false)
	watch("noput", wctx, "/registry/", false, clientv3.WithPrefix(), clientv3.WithFilterPut())
	watch("replay", wctx, "/registry/pods/", true, clientv3.WithPrefix(), clientv3.WithRev(2), clientv3.WithPrevKV())
	time.Sleep(300 * time.Millisecond)

	put("/registry/pods/ns/d", "v1-d")
	put("/registry/pods/ns/a", "v2-a")
	_, err = cli.Delete(bg, "/registry/pods/ns/b")
	must(err, "delete")
	_, err = cli.Txn(bg).Then(
		clientv3.OpPut("/registry/services/ns/s2", "svc2"),
		clientv3.OpPut("/registry/pods/ns/c", "v2-c"),
		clientv3.OpDelete("/registry/services/ns/s1"),
	).Commit()
	must(err, "txn")
	_, err = cli.Delete(bg, "/registry/pods/ns/", clientv3.WithPrefix())
	must(err, "delete prefix")
	cur := put("/registry/other", "x")
	time.Sleep(300 * time.Millisecond)

	// RequestProgress: every watcher of the stream gets a progress response
	for _, r := range recs {
		r.mu.Lock()
		r.progress = 0
		r.mu.Unlock()
	}
	must(cli.RequestProgress(wctx), "request progress")
	time.Sleep(300 * time.Millisecond)
	for _, name := range []string{"pods", "services", "pod-a"} {
		r := recs[name]
		r.mu.Lock()
		if r.progress < 1 {
			failf("%s: no progress response after RequestProgress", name)
		} else {
			fmt.Printf("%s: progress after RequestProgress\n", name)
		}
		r.mu.Unlock()
	}
	// progress_notify (server interval 1 s): idle watchers hear the revision
	for _, r := range recs {
		r.mu.Lock()
		r.progress = 0
		r.mu.Unlock()
	}
	time.Sleep(2500 * time.Millisecond)
	for _, name := range []string{"pods", "services"} {
		r := recs[name]
		r.mu.Lock()
		if r.progress < 1 {
			failf("%s: no progress notify within 2.5 s", name)
		} else {
			fmt.Printf("%s: progress notify seen\n", name)
		}
		r.mu.Unlock()
	}

	// compaction at a revision that deletes a key, then re-watches on a new
	// stream: a watch from exactly the compact revision does not replay that
	// DELETE once the compaction is physically done (etcd drops a tombstone at
	// the compact revision too; without WithCompactPhysical etcd answers
	// before compacting and a quick watch may still see it, so the test waits)
	put("/registry/gone", "x")
	dresp, err := cli.Delete(bg, "/registry/gone")
	must(err, "delete before compaction")
	cur = dresp.Header.Revision
	_, err = cli.Compact(bg, cur, clientv3.WithCompactPhysical())
	must(err, "compact")
	fmt.Printf("compacted at %d\n", cur)
	cctx, ccancel := context.WithCancel(bg)
	watch("compacted", cctx, "/registry/pods/", true, clientv3.WithPrefix(), clientv3.WithRev(cur-3), clientv3.WithPrevKV())
	// from exactly the compact revision: replayed; prev_kv of an event at
	// the compact revision is absent (etcd reads it at rev-1, compacted)
	watch("at-compact", cctx, "/registry/", false, clientv3.WithPrefix(), clientv3.WithRev(cur), clientv3.WithPrevKV())
	time.Sleep(500 * time.Millisecond)
	select {
	case <-dones["compacted"]:
	default:
		failf("compacted watch channel not closed")
	}
	r := recs["compacted"]
	r.mu.Lock()
	ok := false
	for _, l := range r.lines {
		if strings.Contains(l, rpctypes.ErrCompacted.Error()) {
			ok = true
		}
	}
	r.mu.Unlock()
	if !ok {
		failf("re-watch from a compacted revision did not get ErrCompacted")
	}

	wcancel()
	ccancel()
	for name, d := range dones {
		select {
		case <-d:
		case <-time.After(5 * time.Second):
			failf("%s: channel not closed after cancel", name)
		}
	}
	rawStream(cli)
	names := make([]string, 0, len(recs))
	for n := range recs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, l := range recs[n].lines {
			fmt.Printf("%s: %s\n", n, l)
		}
	}
	if recs["pods"].events == 0 || recs["replay"].events == 0 {
		failf("watchers saw no events")
	}
	if failed {
		os.Exit(1)
	}
}
