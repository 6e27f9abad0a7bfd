# Seed 002, section 3.3, as the article prints it: `ip 1` is a typo for
# `ip l` (ip answers: Object "1" is unknown).
ip netns a ns1
ip netns a ns2

ovs-vsctl add-br ovs-br

ip 1 a veth0 type veth peer name ovs-veth0
ip 1 a veth1 type veth peer name ovs-veth1

ip 1 s veth0 netns ns1
ovs-vsctl add-port ovs-br ovs-veth0
ip 1 s ovs-veth0 up

ip 1 s veth1 netns ns2
ovs-vsctl add-port ovs-br ovs-veth1
ip 1 s ovs-veth1 up

ip netns exec ns1 ip a a 10.1.1.2/24 dev veth0
ip netns exec ns1 ip 1 s veth0 up

ip netns exec ns2 ip a a 10.1.1.3/24 dev veth1
ip netns exec ns2 ip 1 s veth1 up

ip netns exec ns1 ping -c 1 10.1.1.3
