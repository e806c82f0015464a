// Skyvault: the whole service in one resource group (create it first: `az group create`).
// Two LRS storage accounts in paired regions (Skyvault replicates between them itself), a Cosmos DB
// index, and a Python function app on Flex Consumption. No keys: shared-key access and Cosmos local
// auth are off and every caller authenticates with Entra ID.
targetScope = 'resourceGroup'

// Storage account names are 3-24 lowercase letters and digits: 'st' + prefix + 6-character suffix +
// 'p'/'s' must fit. Bicep has no pattern check: other characters fail at deployment, on those names.
@description('Prefix of every resource name: 3-11 lowercase letters and digits; a 6-character suffix unique to the resource group is appended.')
@minLength(3)
@maxLength(11)
param namePrefix string

// @allowed must be a literal list: keep it equal to the keys of regionPairs below.
@description('Primary region. Only regions of the pair table are allowed, so the secondary region is always known.')
@allowed([
  'eastus'
  'westus'
  'eastus2'
  'centralus'
  'northcentralus'
  'southcentralus'
  'westus2'
  'westcentralus'
  'westus3'
  'canadacentral'
  'canadaeast'
  'northeurope'
  'westeurope'
  'uksouth'
  'ukwest'
  'francecentral'
  'germanywestcentral'
  'swedencentral'
  'switzerlandnorth'
  'norwayeast'
  'australiaeast'
  'australiasoutheast'
  'japaneast'
  'japanwest'
  'koreacentral'
  'southeastasia'
  'eastasia'
  'centralindia'
  'brazilsouth'
])
param location string = resourceGroup().location

// Any region may override the table, so only the length is checked (Azure refuses unknown names).
@description('Region of the secondary storage account; empty to take the pair of location from the table.')
@maxLength(40)
param pairedLocation string = ''

@description('serverless (default, pay per request) or autoscale (database-level autoscale throughput).')
@allowed([
  'serverless'
  'autoscale'
])
param cosmosCapacityMode string = 'serverless'

@description('Maximum RU/s of the database autoscale throughput; used only when cosmosCapacityMode is autoscale.')
@minValue(1000)
param cosmosAutoscaleMaxThroughput int = 1000

@description('Upper bound of Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each Flex Consumption instance, MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('NCRONTAB (6 fields, with seconds) schedule of the scrub timer (app setting ScrubSchedule).')
@minLength(11)
@maxLength(100)
param scrubSchedule string = '0 0 3 * * *'

@description('NCRONTAB (6 fields, with seconds) schedule of the sweep timer (app setting SweepSchedule).')
@minLength(11)
@maxLength(100)
param sweepSchedule string = '0 */15 * * * *'

@description('NCRONTAB (6 fields, with seconds) schedule of the retention timer (app setting RetentionSchedule).')
@minLength(11)
@maxLength(100)
param retentionSchedule string = '0 0 * * * *'

@description('NCRONTAB (6 fields, with seconds) schedule of the reconcile timer (app setting ReconcileSchedule).')
@minLength(11)
@maxLength(100)
param reconcileSchedule string = '0 30 * * * *'

// An object id is a 36-character GUID; Bicep cannot check the pattern.
@description('Entra object id of the operator (user or group) who runs `skyvault vault ...`; empty for none. Gets the same data-plane roles as the app.')
@maxLength(36)
param operatorPrincipalId string = ''

// No validation decorator applies to an object (@minLength/@maxLength take strings and arrays, and a
// typed dictionary does not parse in pycep, which checkov and the tests read this with); Azure
// itself refuses more than 50 tags.
@description('Tags applied to every resource.')
param tags object = {}

// Azure region pairs: where the secondary storage account goes when pairedLocation is empty.
var regionPairs = {
  eastus: 'westus'
  westus: 'eastus'
  eastus2: 'centralus'
  centralus: 'eastus2'
  northcentralus: 'southcentralus'
  southcentralus: 'northcentralus'
  westus2: 'westcentralus'
  westcentralus: 'westus2'
  westus3: 'eastus'
  canadacentral: 'canadaeast'
  canadaeast: 'canadacentral'
  northeurope: 'westeurope'
  westeurope: 'northeurope'
  uksouth: 'ukwest'
  ukwest: 'uksouth'
  francecentral: 'francesouth'
  germanywestcentral: 'germanynorth'
  swedencentral: 'swedensouth'
  switzerlandnorth: 'switzerlandwest'
  norwayeast: 'norwaywest'
  australiaeast: 'australiasoutheast'
  australiasoutheast: 'australiaeast'
  japaneast: 'japanwest'
  japanwest: 'japaneast'
  koreacentral: 'koreasouth'
  southeastasia: 'eastasia'
  eastasia: 'southeastasia'
  centralindia: 'southindia'
  brazilsouth: 'southcentralus'
}

// Canonical lists: the code's names, read by the infra consistency test. Keep them literal.
var queueNames = ['ingest', 'commit', 'restore', 'replicate', 'usage']
var blobContainerNames = ['skyvault-locks']
var deploymentContainerName = 'app-package'
var cosmosDatabaseName = 'skyvault'
var cosmosContainers = [
  { name: 'vaults', paths: ['/tenantId'], kind: 'Hash', defaultTtl: null }
  { name: 'items', paths: ['/vaultId'], kind: 'Hash', defaultTtl: null }
  { name: 'recoveryPoints', paths: ['/vaultId'], kind: 'Hash', defaultTtl: null }
  { name: 'chunks', paths: ['/vaultId', '/shard'], kind: 'MultiHash', defaultTtl: null }
  { name: 'usage', paths: ['/vaultId'], kind: 'Hash', defaultTtl: null }
  { name: 'usageDays', paths: ['/vaultId'], kind: 'Hash', defaultTtl: null }
  { name: 'jobs', paths: ['/vaultId'], kind: 'Hash', defaultTtl: null }
  { name: 'machines', paths: ['/vaultId'], kind: 'Hash', defaultTtl: null }
  // -1: TTL enabled with no default, so only nonce documents that set their own ttl expire.
  { name: 'nonces', paths: ['/vaultId'], kind: 'Hash', defaultTtl: -1 }
]

// Stable per resource group, so redeploying updates the same resources.
var suffix = take(uniqueString(resourceGroup().id), 6)
var secondaryLocation = empty(pairedLocation) ? regionPairs[location] : pairedLocation
var identityName = 'id-${namePrefix}-${suffix}'
// Storage account names allow lowercase letters and digits only: no dashes.
var primaryStorageName = 'st${namePrefix}${suffix}p'
var secondaryStorageName = 'st${namePrefix}${suffix}s'
var cosmosAccountName = 'cosmos-${namePrefix}-${suffix}'
var workspaceName = 'log-${namePrefix}-${suffix}'
var appInsightsName = 'appi-${namePrefix}-${suffix}'
var planName = 'asp-${namePrefix}-${suffix}'
var functionAppName = 'func-${namePrefix}-${suffix}'

module identity './modules/identity.bicep' = {
  name: 'skyvault-identity'
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

module primaryStorage './modules/storage.bicep' = {
  name: 'skyvault-storage-primary'
  params: {
    name: primaryStorageName
    location: location
    tags: tags
    queueNames: queueNames
    containerNames: concat(blobContainerNames, [deploymentContainerName])
  }
}

module secondaryStorage './modules/storage.bicep' = {
  name: 'skyvault-storage-secondary'
  params: {
    name: secondaryStorageName
    location: secondaryLocation
    tags: tags
    queueNames: []
    containerNames: []
  }
}

module cosmos './modules/cosmos.bicep' = {
  name: 'skyvault-cosmos'
  params: {
    name: cosmosAccountName
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
    containers: cosmosContainers
    capacityMode: cosmosCapacityMode
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
  }
}

module monitoring './modules/monitoring.bicep' = {
  name: 'skyvault-monitoring'
  params: {
    workspaceName: workspaceName
    appInsightsName: appInsightsName
    location: location
    tags: tags
  }
}

module roles './modules/roles.bicep' = {
  name: 'skyvault-roles'
  params: {
    primaryStorageName: primaryStorage.outputs.name
    secondaryStorageName: secondaryStorage.outputs.name
    cosmosAccountName: cosmos.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
  }
}

module functionApp './modules/functionapp.bicep' = {
  name: 'skyvault-functionapp'
  params: {
    name: functionAppName
    planName: planName
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    primaryStorageName: primaryStorage.outputs.name
    primaryBlobEndpoint: primaryStorage.outputs.blobEndpoint
    primaryQueueEndpoint: primaryStorage.outputs.queueEndpoint
    secondaryBlobEndpoint: secondaryStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmosDatabaseName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    scrubSchedule: scrubSchedule
    sweepSchedule: sweepSchedule
    retentionSchedule: retentionSchedule
    reconcileSchedule: reconcileSchedule
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  // The host starts as soon as the app exists: grant its storage, Cosmos and telemetry access first.
  dependsOn: [
    roles
  ]
}

@description('Name of the Flex Consumption function app.')
output functionAppName string = functionApp.outputs.name

@description('Default hostname of the function app.')
output functionAppDefaultHostname string = functionApp.outputs.defaultHostname

@description('Base URL of the public HTTP API (what agents call).')
output publicApiUrl string = functionApp.outputs.publicApiUrl

@description('Name of the primary storage account (queues, locks, deployment package, vault containers).')
output primaryStorageAccountName string = primaryStorage.outputs.name

@description('Name of the secondary (paired-region replica) storage account.')
output secondaryStorageAccountName string = secondaryStorage.outputs.name

@description('Blob endpoint of the primary storage account.')
output primaryBlobEndpoint string = primaryStorage.outputs.blobEndpoint

@description('Queue endpoint of the primary storage account.')
output primaryQueueEndpoint string = primaryStorage.outputs.queueEndpoint

@description('Blob endpoint of the secondary storage account.')
output secondaryBlobEndpoint string = secondaryStorage.outputs.blobEndpoint

@description('Document endpoint of the Cosmos DB account.')
output cosmosAccountEndpoint string = cosmos.outputs.endpoint

@description('Name of the Cosmos DB SQL database.')
output cosmosDatabaseName string = cosmos.outputs.databaseName

@description('Client id of the user-assigned identity the app runs as.')
output managedIdentityClientId string = identity.outputs.clientId

@description('Principal (object) id of the user-assigned identity the app runs as.')
output managedIdentityPrincipalId string = identity.outputs.principalId

@description('Name of the Application Insights component.')
output appInsightsName string = monitoring.outputs.appInsightsName

@description('Name of the resource group deployed to.')
output resourceGroupName string = resourceGroup().name

// Holds no secret: every connection is by identity, and with local auth off the App Insights
// connection string is an address. Save it with `az deployment group show -g <group> -n main
// --query properties.outputs.appSettings.value -o json > skyvault-settings.json`.
@description('All the function app settings, as one object (what SKYVAULT_SERVICE_SETTINGS reads).')
output appSettings object = functionApp.outputs.appSettings
