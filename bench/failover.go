// bench/failover.go: one failover measurement for bench/failover.sh.
//
// Usage: failover ENDPOINT PID [OP_TIMEOUT_MS]
//
// Puts key "failover" through ENDPOINT (a member that will survive) every
// 10 ms, each with its own timeout (default 100 ms). After 10 successes it
// kill -9s PID (the leader) and goes on; the gap is the time from the kill
// to the completion of the first successful put that was invoked after the
// kill. Prints "gap_ms N.N", or "gap_ms timeout" after 30 s, and exits.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.uber.org/zap"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: failover ENDPOINT PID [OP_TIMEOUT_MS]")
		os.Exit(2)
	}
	pid, _ := strconv.Atoi(os.Args[2])
	tmo := 100
	if len(os.Args) > 3 {
		tmo, _ = strconv.Atoi(os.Args[3])
	}
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zap.FatalLevel)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second,
		LogConfig: &lc})
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	defer c.Close()
	put := func(i int) bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(tmo)*time.Millisecond)
		defer cancel()
		_, err := c.Put(ctx, "failover", strconv.Itoa(i))
		return err == nil
	}
	ok := 0
	for i := 0; ok < 10; i++ {
		if put(i) {
			ok++
		} else if i > 3000 {
			fmt.Fprintln(os.Stderr, "no successful put before the kill")
			os.Exit(1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		fmt.Fprintln(os.Stderr, "kill:", err)
		os.Exit(1)
	}
	for i := 0; time.Since(killed) < 30*time.Second; i++ {
		if put(i) {
			fmt.Printf("gap_ms %.1f\n", float64(time.Since(killed).Microseconds())/1000)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("gap_ms timeout")
}
