"use strict";
// The Cosmos DB emulator (@vercel/cosmosdb-server) as its own cli.js starts it, but with
// keep-alive connections: its cli.js answers every request with "Connection: close", so each
// operation cost a new TCP connection on both sides, which real Cosmos DB does not ask for.
// An idle connection is kept 4 minutes, as Azure's load balancers keep one, not Node's 5 s:
// with 5 s the emulator closed pooled connections as a client sent on them, and a write lost
// that way is not retried by azure-cosmos (the load benchmark, bench/load.py, met it).
// With CERT and KEY (PEM files) it serves HTTPS with them, as the keyless tests need: the
// Cosmos DB SDK sends Entra ID tokens over TLS only.
// usage: node cosmosdb_server.js PACKAGE_DIR HOST PORT [CERT KEY]
const fs = require("fs");
const [packageDir, host, port, cert, key] = process.argv.slice(2);
const { createHttpServer, createHttpsServer } = require(packageDir);
const IDLE_MS = 240000;
const server = cert
  ? createHttpsServer({ keepAlive: true, cert: fs.readFileSync(cert), key: fs.readFileSync(key) })
  : createHttpServer({ keepAlive: true });
server.keepAliveTimeout = IDLE_MS;
server.headersTimeout = IDLE_MS + 1000; // Node wants it above keepAliveTimeout
server.listen(parseInt(port, 10), host, () => {
  const address = server.address();
  console.log(`Ready to accept ${cert ? "HTTPS" : "HTTP"} connections at ${address.address}:${address.port}`);
});
