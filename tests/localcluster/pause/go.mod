module kuberl.dev/localcluster/pause

go 1.26
