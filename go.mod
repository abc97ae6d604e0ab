module github.com/cdmdr/mirror

go 1.26

require (
	github.com/google/wire v0.7.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)
