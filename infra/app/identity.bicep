// The app's one user-assigned managed identity: host storage, the deployment
// package, and every SDK call the code makes (AZURE_CLIENT_ID points
// DefaultAzureCredential at it).

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output name string = identity.name
output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
