# Seed 003, section 3.1, to the end: the address moves from the bridge
# port veth0 to the bridge br0, where the stack sees it.
ip link add name br0 type bridge
ip link set br0 up

ip link add veth0 type veth peer name veth1
ip addr add 192.168.3.101/24 dev veth0
ip addr add 192.168.3.102/24 dev veth1
ip link set veth0 up
ip link set veth1 up

ip link set dev veth0 master br0
bridge link

# the address moves from the port to the bridge
ip addr del 192.168.3.101/24 dev veth0
ip addr add 192.168.3.101/24 dev br0
