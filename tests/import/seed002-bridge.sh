# Seed 002, section 3.2: the two namespaces through a Linux bridge.
ip netns a ns1
ip netns a ns2

ip l a br0 type bridge
ip l s br0 up

ip l a veth0 type veth peer name br-veth0
ip l a veth1 type veth peer name br-veth1

ip l s veth0 netns ns1
ip l s br-veth0 master br0
ip l s br-veth0 up

ip l s veth1 netns ns2
ip l s br-veth1 master br0
ip l s br-veth1 up

ip netns exec ns1 ip a a 10.1.1.2/24 dev veth0
ip netns exec ns1 ip l s veth0 up

ip netns exec ns2 ip a a 10.1.1.3/24 dev veth1
ip netns exec ns2 ip l s veth1 up

ip netns exec ns1 ping -c 1 10.1.1.3
