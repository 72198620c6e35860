// e2e/election_lock.go: etcd's Lock and Election gRPC services
// (v3lockpb, v3electionpb) driven with the generated Go clients from
// Debian's golang-etcd-server-dev, for e2e/test_election_lock.sh. It runs
// one scenario against one endpoint and prints a transcript without ids or
// timings (lease ids become L1, L2..., keys name/L1); the test runs it
// against real etcd 3.4 and kshimd and diffs the two transcripts.
//
// The scenario: two lockers on one name (the second waits until the first
// unlocks, a third until the holder's lease is revoked), a lock that times
// out while waiting (its key is gone afterwards), a lock on a missing lease
// and with lease 0 (the server grants one); an election with an observer:
// campaign, a second candidate waiting, leader, proclaim, proclaim by a
// non-leader, resign (the second candidate takes over), re-campaign with the
// same lease and a new value, no leader, campaign on a missing lease, a
// campaign that times out while waiting; every error as code and message;
// 50 lockers waiting on one name at once; a holder whose lease expires; the
// Lock and Election calls with
// auth on (KV permissions of the keys they touch).
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
	"go.etcd.io/etcd/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
	"go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"google.golang.org/grpc/status"
)

var leaseNames = map[int64]string{}

func leaseName(id int64) string {
	if n, ok := leaseNames[id]; ok {
		return n
	}
	return fmt.Sprintf("lease?%x", id)
}

// norm replaces every lease id in hex (as the servers spell keys) by its name.
func norm(s string) string {
	ids := make([]int64, 0, len(leaseNames))
	for id := range leaseNames {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] > ids[j] })
	for _, id := range ids {
		s = strings.Replace(s, fmt.Sprintf("%x", id), leaseNames[id], -1)
	}
	return s
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	st, _ := status.FromError(err)
	return fmt.Sprintf("error code=%s desc=%q", st.Code(), st.Message())
}

// deadlineText: a call whose deadline passed. The code is a race even on
// etcd: the client's own timer gives DeadlineExceeded, the server's answer
// (ctx.Err()) Unknown; the text is the same.
func deadlineText(err error) string {
	st, _ := status.FromError(err)
	return fmt.Sprintf("error desc=%q", st.Message())
}

func hdr(h *etcdserverpb.ResponseHeader) string {
	if h == nil {
		return "header=nil"
	}
	return fmt.Sprintf("rev=%d", h.Revision)
}

func kvText(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "kv=nil"
	}
	return norm(fmt.Sprintf("kv{key=%s value=%q create=%d mod=%d ver=%d lease=%s}", kv.Key, kv.Value,
		kv.CreateRevision, kv.ModRevision, kv.Version, leaseName(kv.Lease)))
}

func leaderText(l *v3electionpb.LeaderKey) string {
	if l == nil {
		return "leader=nil"
	}
	return norm(fmt.Sprintf("leader{name=%s key=%s rev=%d lease=%s}", l.Name, l.Key, l.Rev, leaseName(l.Lease)))
}

func say(format string, a ...interface{}) { fmt.Printf(format+"\n", a...) }

func fatal(format string, a ...interface{}) {
	fmt.Printf("FATAL: "+format+"\n", a...)
	os.Exit(1)
}

type lockResult struct {
	resp *v3lockpb.LockResponse
	err  error
}

type campaignResult struct {
	resp *v3electionpb.CampaignResponse
	err  error
}

// blocked: true if nothing arrives on ch within d.
func lockBlocked(ch chan lockResult, d time.Duration) bool {
	select {
	case r := <-ch:
		ch <- r
		return false
	case <-time.After(d):
		return true
	}
}

func keysUnder(cli *clientv3.Client, pfx string) string {
	resp, err := cli.Get(context.Background(), pfx, clientv3.WithPrefix())
	if err != nil {
		return errText(err)
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, norm(string(kv.Key)))
	}
	sort.Strings(ks) // the lease ids, hence the key order, differ between servers
	return fmt.Sprintf("%v", ks)
}

func main() {
	ep := os.Args[1]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fatal("connect: %v", err)
	}
	defer cli.Close()
	bg := context.Background()
	lk := v3lockpb.NewLockClient(cli.ActiveConnection())
	el := v3electionpb.NewElectionClient(cli.ActiveConnection())

	var leases []int64
	for i := 1; i <= 4; i++ {
		g, err := cli.Grant(bg, 60)
		if err != nil {
			fatal("grant: %v", err)
		}
		id := int64(g.ID)
		leaseNames[id] = fmt.Sprintf("L%d", i)
		leases = append(leases, id)
	}
	leaseNames[0] = "0"
	L1, L2, L3, L4 := leases[0], leases[1], leases[2], leases[3]

	// ---- Lock
	say("== lock")
	r1, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: L1})
	if err != nil {
		fatal("lock 1: %v", err)
	}
	say("lock lk L1: %s key=%s", hdr(r1.Header), norm(string(r1.Key)))
	r1b, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: L1})
	say("lock lk L1 again (held by the same lease): %s %s", errText(err), norm(fmt.Sprintf("%s key=%s", hdr(r1b.GetHeader()), r1b.GetKey())))

	second := make(chan lockResult, 1)
	go func() {
		r, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: L2})
		second <- lockResult{r, err}
	}()
	say("lock lk L2 waits: %v", lockBlocked(second, 700*time.Millisecond))
	say("keys under lk/: %s", keysUnder(cli, "lk/"))

	ctx, cancel := context.WithTimeout(bg, 500*time.Millisecond)
	_, err = lk.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: L4})
	cancel()
	say("lock lk L4 with a 500ms deadline: %s", deadlineText(err))
	time.Sleep(300 * time.Millisecond)
	say("keys under lk/ after the deadline: %s", keysUnder(cli, "lk/"))

	u, err := lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: r1.Key})
	say("unlock L1: %s %s", errText(err), hdr(u.GetHeader()))
	select {
	case r := <-second:
		say("lock lk L2 acquired: %s %s key=%s", errText(r.err), hdr(r.resp.GetHeader()), norm(string(r.resp.GetKey())))
	case <-time.After(5 * time.Second):
		fatal("lock lk L2 not acquired after the unlock")
	}

	third := make(chan lockResult, 1)
	go func() {
		r, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: L3})
		third <- lockResult{r, err}
	}()
	say("lock lk L3 waits: %v", lockBlocked(third, 700*time.Millisecond))
	rv, err := cli.Revoke(bg, clientv3.LeaseID(L2))
	if err != nil {
		fatal("revoke L2: %v", err)
	}
	say("revoke L2: %s", hdr(rv.Header))
	select {
	case r := <-third:
		say("lock lk L3 acquired: %s %s key=%s", errText(r.err), hdr(r.resp.GetHeader()), norm(string(r.resp.GetKey())))
	case <-time.After(5 * time.Second):
		fatal("lock lk L3 not acquired after the revoke")
	}
	u, err = lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: []byte(fmt.Sprintf("lk/%x", L3))})
	say("unlock L3: %s %s", errText(err), hdr(u.GetHeader()))
	u, err = lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: []byte("lk/nothing")})
	say("unlock a key that is not there: %s %s", errText(err), hdr(u.GetHeader()))
	u, err = lk.Unlock(bg, &v3lockpb.UnlockRequest{})
	say("unlock without a key: %s %s", errText(err), hdr(u.GetHeader()))

	_, err = lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: 0x1234})
	say("lock on a missing lease: %s", errText(err))
	say("keys under lk/: %s", keysUnder(cli, "lk/"))

	r0, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("lz")})
	if err != nil {
		say("lock with lease 0: %s", errText(err))
	} else {
		var id int64
		fmt.Sscanf(strings.TrimPrefix(string(r0.Key), "lz/"), "%x", &id)
		ttl, err := cli.TimeToLive(bg, clientv3.LeaseID(id), clientv3.WithAttachedKeys())
		if err != nil {
			fatal("timetolive of the lock's lease: %v", err)
		}
		say("lock with lease 0: %s key has the server's new lease: %v granted TTL %d keys %d",
			hdr(r0.Header), id != 0 && id == int64(ttl.ID), ttl.GrantedTTL, len(ttl.Keys))
		cli.Revoke(bg, clientv3.LeaseID(id))
	}

	// ---- Election
	say("== election")
	_, err = el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("el")})
	say("leader with no candidate: %s", errText(err))

	octx, ocancel := context.WithCancel(bg)
	obs, err := el.Observe(octx, &v3electionpb.LeaderRequest{Name: []byte("el")})
	if err != nil {
		fatal("observe: %v", err)
	}
	observed := make(chan string, 100)
	go func() {
		for {
			r, err := obs.Recv()
			if err != nil {
				close(observed)
				return
			}
			observed <- fmt.Sprintf("observe: %s %s", hdr(r.Header), kvText(r.Kv))
		}
	}()
	time.Sleep(300 * time.Millisecond)

	c1, err := el.Campaign(bg, &v3electionpb.CampaignRequest{Name: []byte("el"), Lease: L1, Value: []byte("v1")})
	if err != nil {
		fatal("campaign L1: %v", err)
	}
	say("campaign el L1 v1: %s %s", hdr(c1.Header), leaderText(c1.Leader))
	cand := make(chan campaignResult, 1)
	go func() {
		r, err := el.Campaign(bg, &v3electionpb.CampaignRequest{Name: []byte("el"), Lease: L3, Value: []byte("v3")})
		cand <- campaignResult{r, err}
	}()
	time.Sleep(700 * time.Millisecond)
	select {
	case <-cand:
		say("campaign el L3 waits: false")
	default:
		say("campaign el L3 waits: true")
	}
	l, err := el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("el")})
	say("leader: %s %s %s", errText(err), hdr(l.GetHeader()), kvText(l.GetKv()))
	p, err := el.Proclaim(bg, &v3electionpb.ProclaimRequest{Leader: c1.Leader, Value: []byte("v1b")})
	say("proclaim v1b by L1: %s %s", errText(err), hdr(p.GetHeader()))
	bad := *c1.Leader
	bad.Rev = c1.Leader.Rev + 1000
	p, err = el.Proclaim(bg, &v3electionpb.ProclaimRequest{Leader: &bad, Value: []byte("x")})
	say("proclaim with a wrong rev: %s %s", errText(err), hdr(p.GetHeader()))
	p, err = el.Proclaim(bg, &v3electionpb.ProclaimRequest{Value: []byte("x")})
	say("proclaim without a leader: %s", errText(err))
	rs, err := el.Resign(bg, &v3electionpb.ResignRequest{})
	say("resign without a leader: %s %s", errText(err), hdr(rs.GetHeader()))
	rs, err = el.Resign(bg, &v3electionpb.ResignRequest{Leader: &bad})
	say("resign with a wrong rev: %s %s", errText(err), hdr(rs.GetHeader()))
	say("keys under el/: %s", keysUnder(cli, "el/"))

	ctx, cancel = context.WithTimeout(bg, 500*time.Millisecond)
	_, err = el.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("el"), Lease: L4, Value: []byte("v4")})
	cancel()
	say("campaign el L4 with a 500ms deadline: %s", deadlineText(err))
	time.Sleep(300 * time.Millisecond)
	say("keys under el/ after the deadline: %s", keysUnder(cli, "el/"))

	rs, err = el.Resign(bg, &v3electionpb.ResignRequest{Leader: c1.Leader})
	say("resign L1: %s %s", errText(err), hdr(rs.GetHeader()))
	var c3 *v3electionpb.CampaignResponse
	select {
	case r := <-cand:
		c3 = r.resp
		say("campaign el L3 elected: %s %s %s", errText(r.err), hdr(r.resp.GetHeader()), leaderText(r.resp.GetLeader()))
	case <-time.After(5 * time.Second):
		fatal("campaign el L3 not elected after the resign")
	}
	if c3 == nil {
		fatal("campaign el L3 failed")
	}
	l, err = el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("el")})
	say("leader: %s %s %s", errText(err), hdr(l.GetHeader()), kvText(l.GetKv()))
	c3b, err := el.Campaign(bg, &v3electionpb.CampaignRequest{Name: []byte("el"), Lease: L3, Value: []byte("v3b")})
	say("campaign el L3 again with v3b: %s %s %s", errText(err), hdr(c3b.GetHeader()), leaderText(c3b.GetLeader()))
	l, err = el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("el")})
	say("leader: %s %s %s", errText(err), hdr(l.GetHeader()), kvText(l.GetKv()))
	rs, err = el.Resign(bg, &v3electionpb.ResignRequest{Leader: c3.Leader})
	say("resign L3: %s %s", errText(err), hdr(rs.GetHeader()))
	_, err = el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("el")})
	say("leader after the resign: %s", errText(err))

	c4, err := el.Campaign(bg, &v3electionpb.CampaignRequest{Name: []byte("el"), Lease: L4, Value: []byte("v4")})
	say("campaign el L4 v4: %s %s %s", errText(err), hdr(c4.GetHeader()), leaderText(c4.GetLeader()))
	rv, err = cli.Revoke(bg, clientv3.LeaseID(L4))
	if err != nil {
		fatal("revoke L4: %v", err)
	}
	say("revoke L4: %s", hdr(rv.Header))
	_, err = el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("el")})
	say("leader after the revoke: %s", errText(err))

	_, err = el.Campaign(bg, &v3electionpb.CampaignRequest{Name: []byte("el"), Lease: 0x1234, Value: []byte("x")})
	say("campaign on a missing lease: %s", errText(err))
	say("keys under el/: %s", keysUnder(cli, "el/"))

	time.Sleep(500 * time.Millisecond)
	ocancel()
	for line := range observed {
		say("%s", line)
	}
	contention(cli, lk)
	expiry(cli, lk)
	authScenario(ep, cli)
	say("== done")
}

// contention: n lockers wait on one name at once (each waiter is a blocked
// Lock call on the server); each holds the lock alone and unlocks, and they
// get it in the order their keys were created.
func contention(cli *clientv3.Client, lk v3lockpb.LockClient) {
	bg := context.Background()
	const n = 50
	say("== %d lockers on one name", n)
	type got struct {
		rev, create int64
	}
	var order []got
	var mu sync.Mutex
	holders := 0
	overlap := false
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		g, err := cli.Grant(bg, 60)
		if err != nil {
			fatal("grant: %v", err)
		}
		wg.Add(1)
		go func(lease int64) {
			defer wg.Done()
			r, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("many"), Lease: lease})
			if err != nil {
				fatal("lock many: %v", err)
			}
			mu.Lock()
			holders++
			if holders > 1 {
				overlap = true
			}
			mu.Unlock()
			kv, err := cli.Get(bg, string(r.Key))
			if err != nil || len(kv.Kvs) != 1 {
				fatal("get my key: %v", err)
			}
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			holders--
			order = append(order, got{r.Header.Revision, kv.Kvs[0].CreateRevision})
			mu.Unlock()
			if _, err := lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: r.Key}); err != nil {
				fatal("unlock many: %v", err)
			}
			cli.Revoke(bg, clientv3.LeaseID(lease))
		}(int64(g.ID))
	}
	wg.Wait()
	inOrder := true
	for i := 1; i < len(order); i++ {
		inOrder = inOrder && order[i].create > order[i-1].create
	}
	say("all acquired: %v, never two holders: %v, in create order: %v", len(order) == n, !overlap, inOrder)
	say("keys under many/: %s", keysUnder(cli, "many/"))
}

// expiry: the holder's lease runs out (no keepalive); the waiter gets the
// lock from the expiry's delete.
func expiry(cli *clientv3.Client, lk v3lockpb.LockClient) {
	bg := context.Background()
	say("== lease expiry")
	short, err := cli.Grant(bg, 2)
	if err != nil {
		fatal("grant: %v", err)
	}
	long, err := cli.Grant(bg, 60)
	if err != nil {
		fatal("grant: %v", err)
	}
	leaseNames[int64(short.ID)] = "L6"
	leaseNames[int64(long.ID)] = "L7"
	r, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("ex"), Lease: int64(short.ID)})
	say("lock ex L6 (TTL 2): %s %s key=%s", errText(err), hdr(r.GetHeader()), norm(string(r.GetKey())))
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	r, err = lk.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("ex"), Lease: int64(long.ID)})
	say("lock ex L7 after L6 expired: %s %s key=%s", errText(err), hdr(r.GetHeader()), norm(string(r.GetKey())))
	say("keys under ex/: %s", keysUnder(cli, "ex/"))
	cli.Revoke(bg, long.ID)
}

// authScenario: with auth on, Lock and Election need the KV permissions of
// the keys they touch (alice may read and write under al/ only).
func authScenario(ep string, cli *clientv3.Client) {
	bg := context.Background()
	say("== auth")
	must := func(what string, err error) {
		if err != nil {
			fatal("%s: %v", what, err)
		}
	}
	_, err := cli.RoleAdd(bg, "root")
	must("role add root", err)
	_, err = cli.UserAdd(bg, "root", "rootpw")
	must("user add root", err)
	_, err = cli.UserGrantRole(bg, "root", "root")
	must("grant root", err)
	_, err = cli.RoleAdd(bg, "al")
	must("role add al", err)
	_, err = cli.RoleGrantPermission(bg, "al", "al/", clientv3.GetPrefixRangeEnd("al/"),
		clientv3.PermissionType(clientv3.PermReadWrite))
	must("grant al/", err)
	_, err = cli.UserAdd(bg, "alice", "apw")
	must("user add alice", err)
	_, err = cli.UserGrantRole(bg, "alice", "al")
	must("grant alice", err)
	_, err = cli.AuthEnable(bg)
	must("auth enable", err)

	alice, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second,
		Username: "alice", Password: "apw"})
	must("alice connect", err)
	defer alice.Close()
	g, err := alice.Grant(bg, 60)
	must("alice grant", err)
	leaseNames[int64(g.ID)] = "L5"
	lk := v3lockpb.NewLockClient(alice.ActiveConnection())
	el := v3electionpb.NewElectionClient(alice.ActiveConnection())
	r, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("al"), Lease: int64(g.ID)})
	say("alice lock al: %s %s key=%s", errText(err), hdr(r.GetHeader()), norm(string(r.GetKey())))
	u, err := lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: r.GetKey()})
	say("alice unlock al: %s %s", errText(err), hdr(u.GetHeader()))
	_, err = lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: int64(g.ID)})
	say("alice lock lk: %s", errText(err))
	u, err = lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: []byte("lk/x")})
	say("alice unlock lk/x: %s", errText(err))
	c, err := el.Campaign(bg, &v3electionpb.CampaignRequest{Name: []byte("al"), Lease: int64(g.ID), Value: []byte("a")})
	say("alice campaign al: %s %s %s", errText(err), hdr(c.GetHeader()), leaderText(c.GetLeader()))
	l, err := el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("al")})
	say("alice leader al: %s %s", errText(err), kvText(l.GetKv()))
	_, err = el.Leader(bg, &v3electionpb.LeaderRequest{Name: []byte("el")})
	say("alice leader el: %s", errText(err))
	_, err = el.Campaign(bg, &v3electionpb.CampaignRequest{Name: []byte("el"), Lease: int64(g.ID), Value: []byte("a")})
	say("alice campaign el: %s", errText(err))
	_, err = el.Proclaim(bg, &v3electionpb.ProclaimRequest{Leader: &v3electionpb.LeaderKey{Name: []byte("el"),
		Key: []byte("el/x"), Rev: 1, Lease: int64(g.ID)}, Value: []byte("a")})
	say("alice proclaim el: %s", errText(err))
	rs, err := el.Resign(bg, &v3electionpb.ResignRequest{Leader: c.GetLeader()})
	say("alice resign al: %s %s", errText(err), hdr(rs.GetHeader()))
	anon := v3lockpb.NewLockClient(cli.ActiveConnection())
	_, err = anon.Lock(bg, &v3lockpb.LockRequest{Name: []byte("al"), Lease: int64(g.ID)})
	say("lock without a user: %s", errText(err))

	root, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second,
		Username: "root", Password: "rootpw"})
	must("root connect", err)
	defer root.Close()
	_, err = root.AuthDisable(bg)
	must("auth disable", err)
}
