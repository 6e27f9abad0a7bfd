# Seed 002: a veth pair with both ends in one namespace. The ping only
# works with the settings the article adds after seeing ARP go unanswered.
sudo ip link add veth0 type veth peer name veth1
sudo ip addr add 10.1.1.2/24 dev veth0
sudo ip addr add 10.1.1.3/24 dev veth1
sudo ip link set veth0 up
sudo ip link set veth1 up

echo 1 > /proc/sys/net/ipv4/conf/veth1/accept_local
echo 1 > /proc/sys/net/ipv4/conf/veth0/accept_local
echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter
echo 0 > /proc/sys/net/ipv4/conf/veth0/rp_filter
echo 0 > /proc/sys/net/ipv4/conf/veth1/rp_filter

ping -I veth0 10.1.1.3 -c 2
