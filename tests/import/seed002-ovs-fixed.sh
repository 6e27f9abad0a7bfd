# Seed 002, section 3.3, with `ip 1` read as the `ip l` it means: the two
# namespaces through an Open vSwitch bridge (a weft switch once imported).
ip netns a ns1
ip netns a ns2

ovs-vsctl add-br ovs-br

ip l a veth0 type veth peer name ovs-veth0
ip l a veth1 type veth peer name ovs-veth1

ip l s veth0 netns ns1
ovs-vsctl add-port ovs-br ovs-veth0
ip l s ovs-veth0 up

ip l s veth1 netns ns2
ovs-vsctl add-port ovs-br ovs-veth1
ip l s ovs-veth1 up

ip netns exec ns1 ip a a 10.1.1.2/24 dev veth0
ip netns exec ns1 ip l s veth0 up

ip netns exec ns2 ip a a 10.1.1.3/24 dev veth1
ip netns exec ns2 ip l s veth1 up

ip netns exec ns1 ping -c 1 10.1.1.3
