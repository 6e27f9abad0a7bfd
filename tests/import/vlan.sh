# VLANs the vconfig way (seed 000's command table) and the ip way, and an
# Open vSwitch access port: a and b share VLANs 10 and 20 over one cable;
# c is on VLAN 10 through an OVS bridge in b's namespace.
for ns in a b c; do
  ip netns add $ns
done
ip link add e0 netns a type veth peer name e0 netns b
ip link add c0 netns c type veth peer name c-port

# VLAN devices on both ends of the a-b cable
ip netns exec a vconfig add e0 10
ip netns exec b vconfig add e0 10
for ns in a b; do
  ip -n $ns link add link e0 name e0.20 type vlan id 20
  ip -n $ns link set e0 up
  ip -n $ns link set e0.10 up
  ip -n $ns link set e0.20 up
done
ip -n a addr add 10.10.0.1/24 dev e0.10
ip -n b addr add 10.10.0.2/24 dev e0.10
ip -n a addr add 10.20.0.1/24 dev e0.20
ip -n b addr add 10.20.0.2/24 dev e0.20

# c on an OVS access port of VLAN 10 (in the machine's own namespace)
ovs-vsctl add-br ovs0
ovs-vsctl add-port ovs0 c-port tag=10
ip link set c-port up
ip -n c addr add 10.30.0.3/24 dev c0
ip -n c link set c0 up
