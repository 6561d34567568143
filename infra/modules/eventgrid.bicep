// Event Grid system topic on the storage account. Flex Consumption supports only the
// Event Grid based blob trigger (source: EventGrid), so blob-created events are pushed to the
// app instead of being polled. The subscription that delivers them to `submit_from_blob` is
// in eventgrid-subscription.bicep, deployed once the app's code is published (see README).

@description('Azure region: must be the storage account\'s region.')
param location string

@description('System topic name.')
param name string

@description('Resource id of the storage account the topic publishes events of.')
param storageAccountId string

param tags object = {}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output id string = topic.id
output name string = topic.name
