#!/bin/sh
# A tutorial-style script: three hosts on a bridge, made in a loop, with
# the `ip -n` form and several settings in one `ip link set`.
set -e
BR=br0
ip link add $BR type bridge
ip link set $BR up
ip addr add 10.0.0.1/24 dev $BR
for i in 1 2 3; do
  ip netns add h$i
  ip link add veth$i type veth peer name eth0 netns h$i
  ip link set veth$i master $BR up
  ip -n h$i addr add 10.0.0.1$i/24 dev eth0
  ip -n h$i link set eth0 up
  ip -n h$i link set lo up
  ip -n h$i route add default via 10.0.0.1
done
sysctl -w net.ipv4.ip_forward=1 >/dev/null
