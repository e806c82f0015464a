// The one identity the function app runs as. User-assigned rather than system-assigned so its
// role assignments can exist before the app does and the host starts with access already granted.

@description('Identity name.')
param name string

@description('Region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
