// Deployed to the Azure ML workspace's resource group, new or existing: the
// app identity's role on the workspace, and the workspace's Event Grid system
// topic (RunCompleted / RunStatusChanged go to the azureml_event function; the
// subscription itself is created by scripts/postdeploy.sh). Azure allows one
// system topic per source: name an existing one to reuse it.

param workspaceName string
param appPrincipalId string
param systemTopicName string
param existingSystemTopicName string
param location string
param tags object

var roles = {
  azureMlDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

// Data assets, fine-tuning jobs, models, online endpoints and deployments,
// endpoint keys (the smoke test): all within the workspace.
resource appOnWorkspace 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, roles.azureMlDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMlDataScientist)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource workspaceSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = if (empty(existingSystemTopicName)) {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

// The workspace's system-assigned identity: serverless fine-tuning jobs read
// the in-place data assets with it (rbac.bicep gives it Storage Blob Data Reader).
output workspacePrincipalId string = workspace.identity.principalId
output systemTopicName string = empty(existingSystemTopicName) ? workspaceSystemTopic.name : existingSystemTopicName
output resourceGroupName string = resourceGroup().name
