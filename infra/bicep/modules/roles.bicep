// Every grant in one place: Azure RBAC on the storage accounts and Application Insights, and the
// Cosmos DB data-plane role (which is not Azure RBAC and has its own assignment resource).

@description('Primary storage account name.')
param primaryStorageName string

@description('Secondary storage account name.')
param secondaryStorageName string

@description('Cosmos DB account name.')
param cosmosAccountName string

@description('Application Insights name.')
param appInsightsName string

@description('Principal id of the function app identity.')
param principalId string

@description('Entra object id of the operator (user or group); empty for none.')
param operatorPrincipalId string = ''

// Built-in role definition ids, with the name each one has in the portal.
var roleDefinitions = {
  storageBlobDataOwner: {
    name: 'Storage Blob Data Owner'
    // Owner rather than Contributor: it includes generateUserDelegationKey, which the agents' SAS need.
    id: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  }
  storageQueueDataContributor: {
    name: 'Storage Queue Data Contributor'
    // Contributor rather than Reader+Processor+Sender: the host creates queues and moves poison messages.
    id: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  }
  monitoringMetricsPublisher: {
    name: 'Monitoring Metrics Publisher'
    // Application Insights has local auth off, so telemetry is accepted only from this role.
    id: '3913510d-42f4-4e42-8a64-420c390055eb'
  }
  cosmosDbBuiltInDataContributor: {
    name: 'Cosmos DB Built-in Data Contributor'
    id: '00000000-0000-0000-0000-000000000002'
  }
}

var blobDataOwnerId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions.storageBlobDataOwner.id)
var queueDataContributorId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions.storageQueueDataContributor.id)
var metricsPublisherId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitions.monitoringMetricsPublisher.id)
var hasOperator = !empty(operatorPrincipalId)

resource primary 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: primaryStorageName
}

resource secondary 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: secondaryStorageName
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' existing = {
  name: cosmosAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource appBlobOwnerPrimary 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(primary.id, principalId, blobDataOwnerId)
  scope: primary
  properties: {
    roleDefinitionId: blobDataOwnerId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appBlobOwnerSecondary 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secondary.id, principalId, blobDataOwnerId)
  scope: secondary
  properties: {
    roleDefinitionId: blobDataOwnerId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appQueueContributorPrimary 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(primary.id, principalId, queueDataContributorId)
  scope: primary
  properties: {
    roleDefinitionId: queueDataContributorId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, metricsPublisherId)
  scope: appInsights
  properties: {
    roleDefinitionId: metricsPublisherId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: cosmos
  name: guid(cosmos.id, principalId, roleDefinitions.cosmosDbBuiltInDataContributor.id)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${roleDefinitions.cosmosDbBuiltInDataContributor.id}'
    principalId: principalId
    scope: cosmos.id
  }
}

// The operator's grants: the same data-plane access as the app, so `skyvault vault ...` works
// with the operator's own Entra sign-in. principalType is left out: it may be a user or a group.

resource operatorBlobOwnerPrimary 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(primary.id, operatorPrincipalId, blobDataOwnerId)
  scope: primary
  properties: {
    roleDefinitionId: blobDataOwnerId
    principalId: operatorPrincipalId
  }
}

resource operatorBlobOwnerSecondary 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(secondary.id, operatorPrincipalId, blobDataOwnerId)
  scope: secondary
  properties: {
    roleDefinitionId: blobDataOwnerId
    principalId: operatorPrincipalId
  }
}

resource operatorQueueContributorPrimary 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(primary.id, operatorPrincipalId, queueDataContributorId)
  scope: primary
  properties: {
    roleDefinitionId: queueDataContributorId
    principalId: operatorPrincipalId
  }
}

resource operatorQueueContributorSecondary 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(secondary.id, operatorPrincipalId, queueDataContributorId)
  scope: secondary
  properties: {
    roleDefinitionId: queueDataContributorId
    principalId: operatorPrincipalId
  }
}

resource operatorCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = if (hasOperator) {
  parent: cosmos
  name: guid(cosmos.id, operatorPrincipalId, roleDefinitions.cosmosDbBuiltInDataContributor.id)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${roleDefinitions.cosmosDbBuiltInDataContributor.id}'
    principalId: operatorPrincipalId
    scope: cosmos.id
  }
}
