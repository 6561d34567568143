// The one storage account of a ParallelRun deployment: the Functions host's own storage
// (AzureWebJobsStorage), the app's deployment package, and ParallelRun's data:
//   blob   parallelrun (system: code snapshots, models, job specs), parallelrun-requests
//          (jobs submitted by upload; Event Grid triggers submit_from_blob), parallelrun-outputs
//          (default output location), and the Flex Consumption deployment package container;
//   queue  parallelrun-plan, parallelrun-batches, parallelrun-finalize and their "-poison" queues
//          (created up front so poison handling never depends on the host creating them);
//   table  parallelrunledger (one partition per job), parallelrunjobs (job index),
//          parallelrunmodels (model registry).
// Shared-key access is disabled by default: every caller uses Microsoft Entra ID (RBAC).

@description('Azure region.')
param location string

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Allow shared-key (account key / SAS) access. Keep false unless a tool you use cannot authenticate with Entra ID.')
param allowSharedKeyAccess bool = false

@description('Storage redundancy.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_LRS'

@description('Blob container that holds the Flex Consumption deployment package.')
@minLength(3)
@maxLength(63)
param deploymentContainerName string

@description('ParallelRun blob containers (system, requests, outputs).')
param containerNames array = [
  'parallelrun'
  'parallelrun-requests'
  'parallelrun-outputs'
]

@description('ParallelRun queues (plan, batches, finalize). A "-poison" queue is created for each.')
param queueNames array = [
  'parallelrun-plan'
  'parallelrun-batches'
  'parallelrun-finalize'
]

@description('ParallelRun tables (ledger, job index, model registry).')
param tableNames array = [
  'parallelrunledger'
  'parallelrunjobs'
  'parallelrunmodels'
]

param tags object = {}

var allQueueNames = concat(queueNames, map(queueNames, q => '${q}-poison'))

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: allowSharedKeyAccess
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for c in containerNames: {
  parent: blobService
  name: c
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for q in allQueueNames: {
  parent: queueService
  name: q
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for t in tableNames: {
  parent: tableService
  name: t
}]

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
