package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// keyring finds a virtual key by its token without keeping the token.
type keyring struct {
	byHash map[[32]byte]*Key
}

func newKeyring(keys []Key) *keyring {
	kr := &keyring{byHash: make(map[[32]byte]*Key, len(keys))}
	for i := range keys {
		var h [32]byte
		b, _ := hex.DecodeString(strings.ToLower(keys[i].SHA256))
		copy(h[:], b)
		kr.byHash[h] = &keys[i]
	}
	return kr
}

// HashKey is what goes into keys[].sha256 for a token.
func HashKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func (kr *keyring) lookup(token string) (*Key, bool) {
	if token == "" {
		return nil, false
	}
	k, ok := kr.byHash[sha256.Sum256([]byte(token))]
	return k, ok
}

func (k *Key) allows(model string) bool {
	if len(k.AllowedModels) == 0 {
		return true
	}
	for _, m := range k.AllowedModels {
		if m == model {
			return true
		}
	}
	return false
}
