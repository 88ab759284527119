package token

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMetadata(t *testing.T) {
	md := Metadata("tok", "inst", "gu")
	want := map[string]string{
		"authorization":                "Bearer tok",
		"x-gitlab-authentication-type": "oidc",
		"x-gitlab-instance-id":         "inst",
		"x-gitlab-realm":               "self-managed",
		"x-gitlab-global-user-id":      "gu",
	}
	if len(md) != len(want) {
		t.Fatalf("Metadata has %d keys, want %d", len(md), len(want))
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("Metadata[%q] = %q, want %q", k, md[k], v)
		}
	}
}

// TestClaimTagsNameTheConstants is what keeps the claim names in one place:
// every JSON member of Claims is a Claim* constant listed by ClaimNames, and
// every listed name is a member.
func TestClaimTagsNameTheConstants(t *testing.T) {
	listed := map[string]bool{}
	for _, n := range ClaimNames() {
		if listed[n] {
			t.Fatalf("ClaimNames lists %q twice", n)
		}
		listed[n] = true
	}
	typ := reflect.TypeFor[Claims]()
	if typ.NumField() != len(listed) {
		t.Fatalf("Claims has %d fields, ClaimNames %d names", typ.NumField(), len(listed))
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",") // the name, without omitempty
		if !listed[tag] {
			t.Errorf("Claims.%s has json tag %q, which ClaimNames does not list", f.Name, tag)
		}
		delete(listed, tag)
	}
}

// TestClaimsEncodeAsGitLab pins the payload bytes: member order, aud as a
// string, integer NumericDates. python-jose and PyJWT read exactly this.
func TestClaimsEncodeAsGitLab(t *testing.T) {
	iat := time.Unix(1767225600, 999) // sub-second part is dropped
	c := Claims{
		ID: "j", Audience: Audiences{Audience}, Subject: "inst", Issuer: "https://gitlab.example.test",
		IssuedAt: NewNumericDate(iat), NotBefore: NewNumericDate(iat.Add(-NotBeforeSkew)), Expiry: NewNumericDate(iat.Add(DefaultTTL)),
		Realm: RealmSelfManaged, Scopes: []string{"complete_code", "duo_chat"}, InstanceID: "inst",
	}
	got, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"jti":"j","aud":"gitlab-ai-gateway","sub":"inst","iss":"https://gitlab.example.test",` +
		`"iat":1767225600,"nbf":1767225595,"exp":1767229200,"gitlab_realm":"self-managed",` +
		`"scopes":["complete_code","duo_chat"],"gitlab_instance_id":"inst"}`
	if string(got) != want {
		t.Fatalf("payload\n %s\nwant\n %s", got, want)
	}
}

func TestClaimsDecode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		aud     []string
		exp     NumericDate
		wantErr bool
	}{
		{name: "aud as a string", payload: `{"aud":"a","exp":10}`, aud: []string{"a"}, exp: 10},
		{name: "aud as an array", payload: `{"aud":["a","b"]}`, aud: []string{"a", "b"}},
		{name: "fractional exp is kept", payload: `{"exp":1.5}`, exp: 1.5},
		{name: "huge exp is kept for the reader to refuse", payload: `{"exp":1e300}`, exp: 1e300},
		{name: "null exp stays zero", payload: `{"exp":null}`},
		{name: "exp as a string is refused", payload: `{"exp":"10"}`, wantErr: true},
		{name: "aud as a number is refused", payload: `{"aud":5}`, wantErr: true},
		{name: "aud array of numbers is refused", payload: `{"aud":[5]}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Claims
			err := json.Unmarshal([]byte(tc.payload), &c)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("decoded %+v, want an error", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Audience, tc.aud) || c.Expiry != tc.exp {
				t.Fatalf("aud %q exp %v, want %q %v", c.Audience, c.Expiry, tc.aud, tc.exp)
			}
		})
	}
}

func TestAudiencesEncodesAnArrayUnlessSingle(t *testing.T) {
	for _, tc := range []struct {
		aud  Audiences
		want string
	}{{Audiences{"a"}, `"a"`}, {Audiences{"a", "b"}, `["a","b"]`}, {nil, `[]`}} {
		got, err := json.Marshal(tc.aud)
		if err != nil || string(got) != tc.want {
			t.Errorf("Marshal(%q) = %s, %v; want %s", tc.aud, got, err, tc.want)
		}
	}
}

func TestNumericDateTime(t *testing.T) {
	if got, want := NumericDate(1.25).Time(), time.Unix(1, 250_000_000); !got.Equal(want) {
		t.Fatalf("Time() = %v, want %v", got, want)
	}
	if got := NewNumericDate(time.Unix(7, 900_000_000)); got != 7 {
		t.Fatalf("NewNumericDate = %v, want 7", got)
	}
}
