// The user-assigned managed identity the Function App runs as. Every storage and telemetry call
// of the app (host and ParallelRun code alike) authenticates with it; no keys or connection
// strings are stored in app settings.

@description('Azure region.')
param location string

@description('Managed identity name.')
param name string

param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
