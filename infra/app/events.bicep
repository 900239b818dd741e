// Event Grid: the custom topic the app publishes lifecycle CloudEvents to, and
// the system topic of the storage account (BlobCreated events feed the blob
// trigger's Event Grid source). The subscriptions on the system topic are
// created by scripts/postdeploy.sh: their endpoints are validated against the
// deployed functions, so they cannot exist before the code does.

param topicName string
param storageSystemTopicName string
param storageAccountName string
param location string
param tags object

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_191: the topic delivers nothing on its own behalf (no dead-lettering, no managed-identity delivery), so it needs no identity
  // checkov:skip=CKV_AZURE_193: publishers reach it over its public endpoint (no virtual network in this template); only Entra-authenticated senders with EventGrid Data Sender can publish
  name: topicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource storageSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: storageSystemTopicName
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output topicName string = topic.name
output topicEndpoint string = topic.properties.endpoint
output storageSystemTopicName string = storageSystemTopic.name
