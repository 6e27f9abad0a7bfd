# Seed 001: a TUN and a TAP made with ip tuntap, the TUN addressed and up
# (the article uses ifconfig for that), then the TAP deleted.
ip tuntap add dev tun0 mod tun
ip tuntap add dev tap0 mod tap
ip addr add 10.1.0.1 dev tun0
ifconfig tun0 up
ifconfig tun0
ip tuntap del dev tap0 mod tap
ip tuntap add dev tap1 mode tap vnet_hdr multi_queue
ip link set tap1 up
