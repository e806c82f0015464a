// The Skyvault service: a Python 3.11 function app on Flex Consumption. Every connection is made
// with the user-assigned identity (settings <Connection>__credential = managedidentity), so no
// setting carries a key. Flex Consumption takes the worker runtime and version from
// functionAppConfig.runtime and refuses FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION.

@description('Function app name; also the first label of its default hostname.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Region of the plan and the app.')
param location string

@description('Tags applied to the plan and the app.')
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (tells the SDKs which identity to use).')
param identityClientId string

@description('Primary storage account name (host storage: leases, timers, queue triggers).')
param primaryStorageName string

@description('Primary blob endpoint, https://<name>.blob.core.windows.net/.')
param primaryBlobEndpoint string

@description('Primary queue endpoint.')
param primaryQueueEndpoint string

@description('Secondary (paired-region) blob endpoint.')
param secondaryBlobEndpoint string

@description('Blob container of the primary account that holds the deployment package.')
param deploymentContainerName string

@description('Cosmos DB document endpoint.')
param cosmosEndpoint string

@description('Cosmos DB database name.')
param cosmosDatabaseName string

@description('Application Insights connection string (no secret: local auth is off).')
param appInsightsConnectionString string

@description('NCRONTAB schedule of the scrub timer.')
param scrubSchedule string

@description('NCRONTAB schedule of the sweep timer.')
param sweepSchedule string

@description('NCRONTAB schedule of the retention timer.')
param retentionSchedule string

@description('NCRONTAB schedule of the reconcile timer.')
param reconcileSchedule string

@description('Upper bound of Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var appSettings = {
  AzureWebJobsStorage__accountName: primaryStorageName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  Storage__blobServiceUri: primaryBlobEndpoint
  Storage__queueServiceUri: primaryQueueEndpoint
  Storage__credential: 'managedidentity'
  Storage__clientId: identityClientId
  SecondaryStorage__blobServiceUri: secondaryBlobEndpoint
  SecondaryStorage__credential: 'managedidentity'
  SecondaryStorage__clientId: identityClientId
  CosmosDb__accountEndpoint: cosmosEndpoint
  CosmosDb__credential: 'managedidentity'
  CosmosDb__clientId: identityClientId
  CosmosDbDatabase: cosmosDatabaseName
  // Built from the name, not from the site's defaultHostName, which would make the app depend on itself.
  PublicApiUrl: 'https://${name}.azurewebsites.net/api'
  ReplicationCopyMode: 'server'
  ScrubSchedule: scrubSchedule
  SweepSchedule: sweepSchedule
  RetentionSchedule: retentionSchedule
  ReconcileSchedule: reconcileSchedule
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  // Local auth is off on Application Insights: telemetry is sent with the identity's Entra token.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption keeps two always-ready instances per function group billed around the clock and is not offered in every allowed region; Skyvault's recovery is the paired-region copy
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Linux: Flex Consumption exists only on Linux.
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: agents on customer machines call the HTTP API over the internet
  // checkov:skip=CKV_AZURE_17: agents authenticate every request with their own signature (the signed HTTP API), not with TLS client certificates
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales instances itself (scale to zero); there is no worker count to pin
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not support the platform health check
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Agents on customer machines call the signed HTTP API over the internet.
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${primaryBlobEndpoint}${deploymentContainerName}'
          authentication: {
            // Shared keys are off, so the platform fetches the package with the app's identity.
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Deployments go through Entra ID (one deploy / zip deploy with a token); publishing passwords are never issued.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output defaultHostname string = app.properties.defaultHostName
output publicApiUrl string = appSettings.PublicApiUrl
output appSettings object = appSettings
