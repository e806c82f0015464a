// Skyvault's index: one NoSQL account, one database, the containers main.bicep lists.
// Key access is off entirely: the app and the operator reach it through Entra ID data-plane roles.

@description('Cosmos DB account name (3-44 lowercase letters, digits, hyphens).')
@minLength(3)
@maxLength(44)
param name string

@description('Region of the account (single region: Skyvault replicates blobs, the index is rebuilt from them).')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Database name.')
param databaseName string

@description('Containers: [{ name, paths, kind, defaultTtl }], defaultTtl null for no TTL.')
param containers array

@description('serverless: pay per request; autoscale: provisioned database-level autoscale throughput.')
@allowed([
  'serverless'
  'autoscale'
])
param capacityMode string = 'serverless'

@description('Maximum RU/s of the database-level autoscale throughput (autoscale mode only).')
@minValue(1000)
param autoscaleMaxThroughput int = 1000

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  // checkov:skip=CKV_AZURE_101: the function app runs without VNet integration on Flex Consumption, so it reaches Cosmos DB over the public endpoint; local auth is off, only Entra ID tokens are accepted
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    // Comparisons are parenthesised: the Bicep parser used by checkov and the tests has no operator precedence.
    capabilities: (capacityMode == 'serverless') ? [
      {
        name: 'EnableServerless'
      }
    ] : []
    disableLocalAuth: true
    // Without this, anyone holding a key could still change containers and throughput.
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    // The function app runs on the public Flex Consumption network, so the account stays reachable.
    publicNetworkAccess: 'Enabled'
    enableAutomaticFailover: false
    enableMultipleWriteLocations: false
    enableFreeTier: false
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    // Throughput is shared at the database level so adding a container costs nothing extra;
    // serverless accounts reject any throughput setting.
    options: (capacityMode == 'autoscale') ? {
      autoscaleSettings: {
        maxThroughput: autoscaleMaxThroughput
      }
    } : {}
  }
}

resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [for container in containers: {
  parent: database
  name: container.name
  properties: {
    resource: {
      id: container.name
      partitionKey: {
        paths: container.paths
        kind: container.kind
        version: 2
      }
      // null leaves the property out (TTL off); -1 turns per-document TTL on without a default expiry.
      defaultTtl: container.defaultTtl
    }
  }
}]

output name string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
