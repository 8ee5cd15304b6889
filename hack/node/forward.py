"""TCP forwarder: the node's stand-in for kube-proxy's `kubernetes` Service rule.

Pods reach the API server at the Service's cluster IP (the in-cluster default,
KUBERNETES_SERVICE_HOST); the test control plane listens on loopback only, which a pod's
network namespace cannot reach. The node puts the cluster IP on the host and this relays it.

    python3 forward.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT ALLOWED_CIDR...

Connections from addresses outside ALLOWED_CIDR (the pod subnet, loopback) are closed at once:
the cluster IP is a local address, which Linux answers on every interface.
"""
import asyncio
import ipaddress
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen_host, listen_port, target_host, target_port, allowed):
    async def handle(client_reader, client_writer):
        peer = ipaddress.ip_address(client_writer.get_extra_info("peername")[0])
        if not any(peer in network for network in allowed):
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    server = await asyncio.start_server(handle, listen_host, listen_port)
    print(f"forwarding {listen_host}:{listen_port} to {target_host}:{target_port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, port, target, target_port = sys.argv[1:5]
    allowed = [ipaddress.ip_network(cidr) for cidr in sys.argv[5:]]
    asyncio.run(main(host, int(port), target, int(target_port), allowed))
