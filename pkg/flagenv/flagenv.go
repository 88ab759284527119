// Package flagenv fills a flag.FlagSet from three sources, strongest first:
// the command line, environment variables, and an optional YAML config file
// of flag names to values. Every setting therefore has one name in all three
// places: flag --grpc-addr, env AIRLOCK_ISSUER_GRPC_ADDR, file key grpc-addr.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// ConfigFlag is the flag that names the config file.
const ConfigFlag = "config"

// Parse parses args into fs, then sets each flag not given on the command
// line from the environment variable EnvName(prefix, name) if present, else
// from the config file named by --config (or its env variable) if any.
// Unknown keys in the file and malformed values are errors that name the
// source, so a typo never silently falls back to a default.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	if fs.Lookup(ConfigFlag) == nil {
		fs.String(ConfigFlag, "", "path of a YAML file of flag names to values (env "+EnvName(prefix, ConfigFlag)+")")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(EnvName(prefix, f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("env %s: %v", EnvName(prefix, f.Name), e)
			}
			set[f.Name] = true
		}
	})
	if err != nil {
		return err
	}
	path := fs.Lookup(ConfigFlag).Value.String()
	if path == "" {
		return nil
	}
	return applyFile(fs, path, set)
}

func applyFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var kv map[string]any
	if err := yaml.Unmarshal(b, &kv); err != nil {
		return fmt.Errorf("config file %s: %v", path, err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == ConfigFlag || fs.Lookup(k) == nil {
			return fmt.Errorf("config file %s: unknown key %q", path, k)
		}
		if set[k] {
			continue
		}
		v := kv[k]
		var s string
		switch x := v.(type) {
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		case nil:
			continue
		default:
			s = fmt.Sprint(x)
		}
		if err := fs.Set(k, s); err != nil {
			return fmt.Errorf("config file %s: key %q: %v", path, k, err)
		}
	}
	return nil
}

// EnvName returns the environment variable for a flag: prefix + "_" + the
// name in upper case with dashes as underscores (AIRLOCK_GATEWAY_GRPC_ADDR).
func EnvName(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}
