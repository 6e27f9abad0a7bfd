#!/bin/bash
# The floor under the tunnel's added RTT: what one cross-process wakeup
# costs on this machine. Two processes ping-pong one byte over a UDP
# socket pair on loopback, one round every 5 ms (as bench/tunnel.sh's
# pings): each round trip is two wakeups of a sleeping process. Then the
# same with the sender polling its socket (non-blocking, up to SPIN_US)
# after each send instead of sleeping in recv: one wakeup per round trip,
# so the difference is what a bounded spin in a tunnel worker could save
# per wakeup it avoids. Last, both spin back to back: no wakeup at all,
# the system calls and loopback alone.
#
#   bench/wakeup.sh [ROUNDS] [SPIN_US]
#
# Needs a C compiler (cc; ring's build needs one too). Sends only on
# 127.0.0.1; both processes end by themselves (the child after ROUNDS
# answers, or when the parent's socket closes).
set -euo pipefail
R=${1:-2000}; SPIN=${2:-100}
D=$(mktemp -d /tmp/weft-bench-wakeup.XXXXXX)
trap 'rm -rf "$D"' EXIT
cat > "$D/w.c" <<'EOC'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
static void report(const char *what, double *v, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += v[i];
  qsort(v, n, sizeof *v, cmp);
  printf("%-34s avg %6.1f us  median %6.1f  p90 %6.1f  p99 %7.1f\n", what, s / n,
         v[n / 2], v[n * 9 / 10], v[n * 99 / 100]);
}

int main(int argc, char **argv) {
  int rounds = atoi(argv[1]), spin_us = atoi(argv[2]);
  int sv[2];
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t l = sizeof a;
  struct sockaddr_in addr[2];
  for (int i = 0; i < 2; i++) {
    sv[i] = socket(AF_INET, SOCK_DGRAM, 0);
    a.sin_port = 0;
    if (bind(sv[i], (void *)&a, sizeof a)) return perror("bind"), 1;
    getsockname(sv[i], (void *)&addr[i], &l);
  }
  connect(sv[0], (void *)&addr[1], sizeof addr[1]);
  connect(sv[1], (void *)&addr[0], sizeof addr[0]);
  pid_t kid = fork();
  if (kid == 0) {
    char b;
    for (int i = 0; i < 3 * rounds; i++) {
      /* The last rounds: both spin, no gap, no wakeups at all. */
      if (i >= 2 * rounds) {
        while (recv(sv[1], &b, 1, MSG_DONTWAIT) != 1) {}
      } else if (recv(sv[1], &b, 1, 0) != 1) {
        _exit(0);
      }
      send(sv[1], &b, 1, 0);
    }
    _exit(0);
  }
  double *v = malloc(sizeof(double) * rounds);
  struct timespec gap = {0, 5000000};
  for (int mode = 0; mode < 3; mode++) {
    int caught = 0;
    for (int i = 0; i < rounds; i++) {
      if (mode < 2) nanosleep(&gap, NULL);
      char b = 1;
      double t0 = now_us();
      send(sv[0], &b, 1, 0);
      int got = 0;
      if (mode == 2) {
        while (recv(sv[0], &b, 1, MSG_DONTWAIT) != 1) {}
        got = 1;
      }
      if (mode == 1) {
        while (now_us() - t0 < spin_us)
          if (recv(sv[0], &b, 1, MSG_DONTWAIT) == 1) { got = 1; caught++; break; }
      }
      if (!got) recv(sv[0], &b, 1, 0);
      v[i] = now_us() - t0;
    }
    char what[64];
    if (mode == 0)
      snprintf(what, sizeof what, "round trip, both sleep:");
    else if (mode == 1)
      snprintf(what, sizeof what, "round trip, sender spins %d us:", spin_us);
    else
      snprintf(what, sizeof what, "round trip, both spin, no gap:");
    report(what, v, rounds);
    if (mode == 1) printf("  (%d of %d answers caught by the spin)\n", caught, rounds);
  }
  close(sv[0]);
  waitpid(kid, NULL, 0);
  return 0;
}
EOC
cc -O2 -o "$D/w" "$D/w.c"
echo "load $(cut -d' ' -f1-3 /proc/loadavg); cpuidle: $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo ?)"
"$D/w" "$R" "$SPIN"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
