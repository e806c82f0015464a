"use strict";
// The Cosmos DB emulator (@vercel/cosmosdb-server) as its own cli.js starts it, but with
// keep-alive connections: its cli.js answers every request with "Connection: close", so each
// operation cost a new TCP connection on both sides, which real Cosmos DB does not ask for.
// An idle connection is kept 4 minutes, as Azure's load balancers keep one, not Node's 5 s:
// with 5 s the emulator closed pooled connections as a client sent on them, and a write lost
// that way is not retried by azure-cosmos (the load benchmark, bench/load.py, met it).
// usage: node cosmosdb_server.js PACKAGE_DIR HOST PORT
const [packageDir, host, port] = process.argv.slice(2);
const { createHttpServer } = require(packageDir);
const IDLE_MS = 240000;
const server = createHttpServer({ keepAlive: true });
server.keepAliveTimeout = IDLE_MS;
server.headersTimeout = IDLE_MS + 1000; // Node wants it above keepAliveTimeout
server.listen(parseInt(port, 10), host, () => {
  const address = server.address();
  console.log(`Ready to accept HTTP connections at ${address.address}:${address.port}`);
});
