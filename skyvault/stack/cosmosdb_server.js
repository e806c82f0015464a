"use strict";
// The Cosmos DB emulator (@vercel/cosmosdb-server) as its own cli.js starts it, but with
// keep-alive connections: its cli.js answers every request with "Connection: close", so each
// operation cost a new TCP connection on both sides, which real Cosmos DB does not ask for.
// usage: node cosmosdb_server.js PACKAGE_DIR HOST PORT
const [packageDir, host, port] = process.argv.slice(2);
const { createHttpServer } = require(packageDir);
const server = createHttpServer({ keepAlive: true }).listen(parseInt(port, 10), host, () => {
  const address = server.address();
  console.log(`Ready to accept HTTP connections at ${address.address}:${address.port}`);
});
