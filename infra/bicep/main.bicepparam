// Example parameters: copy, adjust, then
//   az group create -n rg-skyvault -l westeurope
//   az deployment group create -g rg-skyvault -f infra/bicep/main.bicep -p infra/bicep/main.bicepparam
using './main.bicep'

param namePrefix = 'skyvault'
param location = 'westeurope'
// '' takes the pair from the table (westeurope -> northeurope).
param pairedLocation = ''
param cosmosCapacityMode = 'serverless'
param cosmosAutoscaleMaxThroughput = 1000
param maximumInstanceCount = 40
param instanceMemoryMB = 2048
param scrubSchedule = '0 0 3 * * *'
param sweepSchedule = '0 */15 * * * *'
param retentionSchedule = '0 0 * * * *'
param reconcileSchedule = '0 30 * * * *'
// Object id of the operator's Entra user or group, e.g. from `az ad signed-in-user show --query id -o tsv`.
param operatorPrincipalId = ''
param tags = {
  service: 'skyvault'
}
