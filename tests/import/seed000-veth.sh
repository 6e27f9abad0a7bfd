# Seed 000, experiment 1 ("simple veth pair"), as the article writes it.

# create the veth pair
ip link add tap1 type veth peer name tap2 

# add the namespaces
ip netns add ns1 
ip netns add ns2 

# attach interfaces to the namespaces
ip link set tap1 netns ns1 
ip link set tap2 netns ns2 

# ip setting
ip netns exec ns1 ip addr add local 192.168.50.1/24 dev tap1 
ip netns exec ns2 ip addr add local 192.168.50.2/24 dev tap2 

# bring up the links
# ip netns exec ns1 ifconfig tap1 up 
ip netns exec ns1 ip link set dev tap1 up 
# ip netns exec ns2 ifconfig tap2 up 
ip netns exec ns2 ip link set dev tap2 up 

# ip check
ip netns exec ns1 ip link show
ip netns exec ns1 ip addr show
ip netns exec ns2 ip link show
ip netns exec ns2 ip addr show

# ping test
ip netns exec ns1 ping -c 1 -W 1 192.168.50.2
ip netns exec ns2 ping -c 1 -W 1 192.168.50.1
