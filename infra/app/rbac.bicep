// Role assignments in the app's resource group, by built-in role id. The app
// identity gets exactly what shared/permissions.py APP_ROLES lists for these
// scopes (the workspace's role is in workspace-access.bicep, deployed to the
// workspace's resource group); the Azure ML workspace identity gets
// TRAINING_ROLES. tests/infra checks both against that table.

param appPrincipalId string
param hostStorageAccountName string
param datasetStorageAccountName string
param appInsightsName string
param eventsTopicName string
param workspacePrincipalId string

@description('Object id of the deploying user (local development against the deployed storage). Empty: no user roles.')
param userPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource datasetStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: datasetStorageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource eventsTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: eventsTopicName
}

// --- the app's identity on its storage ---------------------------------------------
// One account serves as AzureWebJobsStorage and DATASET_STORAGE (storage.bicep),
// so these three also cover the dataset account's needs (Blob Data Owner and
// Queue Data Contributor for the blob trigger's connection, reports and
// splits). A separate dataset account would need its own two assignments:
// tests/infra fails until it has them.

// Host storage, timer locks, blob receipts, the Flex deployment package.
resource appHostBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The blob trigger's internal queues (poison messages) live in host storage.
resource appHostQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageQueueDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The run ledger (RUN_TABLE) and the host's diagnostic events.
resource appHostTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageTableDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- the app's identity on telemetry and events ------------------------------------

// Entra-authenticated telemetry (Application Insights has local auth off).
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Publish lifecycle CloudEvents without a key (the topic has local auth off).
resource appEventsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, appPrincipalId, roles.eventGridDataSender)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- the training job's identity ----------------------------------------------------

// The fine-tuning job reads the data assets in place from the dataset account.
// Serverless jobs run as the workspace's system-assigned identity (no compute
// cluster is created here); a cluster named by FINETUNE_COMPUTE would need this
// same role for its own identity.
resource workspaceDatasetReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(datasetStorage.id, workspacePrincipalId, roles.storageBlobDataReader)
  scope: datasetStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: workspacePrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- optional: the deploying user, for local development -------------------------

resource userBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(hostStorage.id, userPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(hostStorage.id, userPrincipalId, roles.storageQueueDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(hostStorage.id, userPrincipalId, roles.storageTableDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
