# Seed 002: only veth0 has an address; the ping to 192.168.2.1 gets no
# answer (nobody owns that address, so ARP goes unanswered).
sudo ip link add veth0 type veth peer name veth1
sudo ip addr add 192.168.2.11/24 dev veth0
sudo ip link set veth0 up
sudo ip link set veth1 up
ping -c 4 192.168.2.1
