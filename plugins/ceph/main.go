// Command mirror-plugin-ceph is the Ceph RBD storage plugin of mirrord:
// it serves openstack.storage.type.ceph by driving rbd-mirror between
// two Ceph clusters through librados/librbd (go-ceph). The plugin itself
// is the library package cephrbd.
package main

import "github.com/cdmdr/mirror/plugins/ceph/cephrbd"

func main() { cephrbd.Main() }
