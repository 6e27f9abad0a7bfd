# Seed 002, section 3.1: two namespaces joined by a veth pair, written
# with ip's abbreviations (ip netns a, ip l a, ip l s, ip a a).
ip netns a ns1
ip netns a ns2

ip l a veth0 type veth peer name veth1

ip l s veth0 netns ns1
ip l s veth1 netns ns2

ip netns exec ns1 ip a a 10.1.1.2/24 dev veth0
ip netns exec ns1 ip l s veth0 up
ip netns exec ns2 ip a a 10.1.1.3/24 dev veth1
ip netns exec ns2 ip l s veth1 up

ip netns exec ns1 ping -c 1 10.1.1.3
