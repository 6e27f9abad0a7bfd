# Seed 000, experiment 2 ("Linuxbridge with two veth pairs"), as the
# article writes it: its last two routes name tap1, which is in ns1.

# create peer pair
ip link add tap1 type veth peer name br-tap1
ip link add tap2 type veth peer name br-tap2

# add the namespaces
ip netns add ns1
ip netns add ns2

# create the switch
BRIDGE=br-test
brctl addbr $BRIDGE 
# install package: 'bridge-utils' if command brctl not found
brctl stp $BRIDGE off
ip link set dev $BRIDGE up
ip addr add 192.168.50.254/24 dev $BRIDGE

#### PORT 1

# attach one side to linuxbridge
brctl addif br-test br-tap1

# attach the other side to namespace
ip link set tap1 netns ns1

# set the ports to up
ip netns exec ns1 ip link set dev tap1 up
ip link set dev br-tap1 up

# set the ip and route
ip netns exec ns1 ip addr add local 192.168.50.1/24 dev tap1
ip netns exec ns1 ip route add 192.168.50.0/24 via 192.168.50.254 dev tap1
ip netns exec ns1 ip route add default via 192.168.50.254 dev tap1 

#### PORT 2

# attach one side to linuxbridge
brctl addif br-test br-tap2

# attach the other side to namespace
ip link set tap2 netns ns2

# set the ports to up
ip netns exec ns2 ip link set dev tap2 up
ip link set dev br-tap2 up

# set the ip and route
ip netns exec ns2 ip addr add local 192.168.50.2/24 dev tap2
ip netns exec ns2 ip route add 192.168.50.0/24 via 192.168.50.254 dev tap1
ip netns exec ns2 ip route add default via 192.168.50.254 dev tap1
