package config

import (
	"io"
	"os"
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

// The documented example sets every key, and to the defaults.
func TestExampleFileIsCompleteAndDefault(t *testing.T) {
	c, err := Load([]string{"--config", "../../configs/config.yaml.example"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("example differs from the defaults:\n got %+v\nwant %+v", c, Default())
	}
}

func TestExampleFileNamesEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../configs/config.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := yaml.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	ty := reflect.TypeOf(Config{})
	for i := 0; i < ty.NumField(); i++ {
		if k := ty.Field(i).Tag.Get("yaml"); keys[k] == nil {
			t.Errorf("configs/config.yaml.example does not document %q", k)
		}
	}
}
