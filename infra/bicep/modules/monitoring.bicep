// Logs and telemetry. Application Insights refuses instrumentation-key ingestion so only the app's
// identity (Monitoring Metrics Publisher, granted in roles.bicep) can send telemetry.

@description('Log Analytics workspace name.')
param workspaceName string

@description('Application Insights name.')
param appInsightsName string

@description('Region of both resources.')
param location string

@description('Tags applied to both resources.')
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      // Workspace keys would be the one shared secret left in the deployment.
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
  }
}

output appInsightsName string = appInsights.name
// Not a secret: with local auth disabled the instrumentation key in it is only an address.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
