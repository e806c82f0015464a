// One Skyvault storage account. Called twice by main.bicep: the primary (queues, lock and
// deployment containers) and the secondary in the paired region (nothing fixed: the code creates
// its vault-<id> containers at run time).

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the account.')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Queues to create; each also gets its <name>-poison queue up front so the host and the operator tooling see the same set from day one.')
param queueNames array = []

@description('Blob containers to create (per-vault containers are not listed: the code creates them).')
param containerNames array = []

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: agents on customer machines reach blobs over the internet with user-delegation SAS, so the firewall cannot default to Deny
  // checkov:skip=CKV_AZURE_59: same reason; public network access stays on, access itself is Entra ID or user-delegation SAS only
  // checkov:skip=CKV_AZURE_206: LRS on purpose, Skyvault replicates every vault to the paired-region account itself
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // Skyvault replicates to the secondary account itself, so paying for GRS would copy twice.
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Every caller (host, app, operator) authenticates with Entra ID; agents get user-delegation SAS.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    isHnsEnabled: false
    // Agents upload from customer networks with SAS, so the endpoint stays reachable from the internet.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: false
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // Skyvault keeps its own recovery points and deletes on schedule; soft delete would bill deleted chunks twice.
    deleteRetentionPolicy: {
      enabled: false
    }
    containerDeleteRetentionPolicy: {
      enabled: false
    }
    isVersioningEnabled: false
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in containerNames: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource poisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: '${queueName}-poison'
}]

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
