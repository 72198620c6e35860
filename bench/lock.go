// bench/lock.go: the Lock service under load, for bench/lock.sh. Against one
// endpoint it prints three numbers as "name value unit" lines:
//   lock-unlock-c1    Lock+Unlock pairs per second, 1 client (uncontended)
//   lock-unlock-c16   the same with 16 clients on 16 names
//   handoff-p50/p99   ms from an Unlock's answer until the waiter's Lock
//                     answers (two clients alternating on one name)
//   waiters           N Lock calls waiting on one name at once, then all
//                     released in turn: seconds for the whole chain
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
)

func fatal(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "FATAL: "+f+"\n", a...)
	os.Exit(1)
}

func grant(cli *clientv3.Client) int64 {
	g, err := cli.Grant(context.Background(), 600)
	if err != nil {
		fatal("grant: %v", err)
	}
	return int64(g.ID)
}

func pairs(cli *clientv3.Client, clients int, d time.Duration) float64 {
	lk := v3lockpb.NewLockClient(cli.ActiveConnection())
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	end := time.Now().Add(d)
	start := time.Now()
	for c := 0; c < clients; c++ {
		lease := grant(cli)
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			n := 0
			name := []byte(fmt.Sprintf("bench-%d", c))
			for time.Now().Before(end) {
				r, err := lk.Lock(context.Background(), &v3lockpb.LockRequest{Name: name, Lease: lease})
				if err != nil {
					fatal("lock: %v", err)
				}
				if _, err := lk.Unlock(context.Background(), &v3lockpb.UnlockRequest{Key: r.Key}); err != nil {
					fatal("unlock: %v", err)
				}
				n++
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// handoff: A holds; B waits; A unlocks (t0); B's Lock returns (t1); swap.
func handoff(cli *clientv3.Client, rounds int) []float64 {
	lk := v3lockpb.NewLockClient(cli.ActiveConnection())
	bg := context.Background()
	leases := []int64{grant(cli), grant(cli)}
	name := []byte("handoff")
	held, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: name, Lease: leases[0]})
	if err != nil {
		fatal("lock: %v", err)
	}
	var lat []float64
	for i := 0; i < rounds; i++ {
		next := leases[(i+1)%2]
		got := make(chan *v3lockpb.LockResponse, 1)
		go func() {
			r, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: name, Lease: next})
			if err != nil {
				fatal("lock: %v", err)
			}
			got <- r
		}()
		time.Sleep(5 * time.Millisecond) // the waiter is queued
		if _, err := lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
			fatal("unlock: %v", err)
		}
		t0 := time.Now()
		held = <-got
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
	}
	sort.Float64s(lat)
	return lat
}

func waiters(cli *clientv3.Client, n int) float64 {
	lk := v3lockpb.NewLockClient(cli.ActiveConnection())
	bg := context.Background()
	leases := make([]int64, n)
	for i := range leases {
		leases[i] = grant(cli)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(lease int64) {
			defer wg.Done()
			r, err := lk.Lock(bg, &v3lockpb.LockRequest{Name: []byte("chain"), Lease: lease})
			if err != nil {
				fatal("lock: %v", err)
			}
			if _, err := lk.Unlock(bg, &v3lockpb.UnlockRequest{Key: r.Key}); err != nil {
				fatal("unlock: %v", err)
			}
		}(leases[i])
	}
	wg.Wait()
	return time.Since(start).Seconds()
}

func main() {
	ep := os.Args[1]
	nwait, _ := strconv.Atoi(os.Args[2])
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fatal("connect: %v", err)
	}
	defer cli.Close()
	fmt.Printf("lock-unlock-c1 %.0f pairs/s\n", pairs(cli, 1, 3*time.Second))
	fmt.Printf("lock-unlock-c16 %.0f pairs/s\n", pairs(cli, 16, 3*time.Second))
	lat := handoff(cli, 200)
	fmt.Printf("handoff-p50 %.2f ms\n", lat[len(lat)/2])
	fmt.Printf("handoff-p99 %.2f ms\n", lat[len(lat)*99/100])
	fmt.Printf("waiters-%d %.2f s\n", nwait, waiters(cli, nwait))
}
