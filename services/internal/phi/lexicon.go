package phi

import "strings"

// entry is one way a field name says "identifier": a run of tokens, the
// categories it stands for, and the conditions that keep it from firing on
// unrelated names ("cell_count" is no phone, "med_name" no person).
type entry struct {
	seq  []string
	cats []Category
	age  bool // basis age rather than name
	// coded: also for coded fields (radio, dropdown, checkbox, yesno,
	// slider, calc): a choice list cannot hold a typed name or number, but
	// it can hold a place, a birth month or an age group.
	coded bool
	// with: one of these tokens must be elsewhere in the name, unless
	// alone is set and the name holds nothing but qualifiers and digits.
	with  []string
	alone bool
	// notBefore / notAfter: the token right before / after the run must
	// not be one of these.
	notBefore []string
	notAfter  []string
}

var (
	numberWords = []string{"no", "num", "nbr", "number", "nr", "numb", "id"}
	// qualifiers say whose or which, and leave the meaning alone:
	// "pt_last", "home_cell", "phone_2".
	qualifiers = words("pt patient participant subj subject respondent parent mother mom father dad guardian spouse " +
		"partner child caregiver contact emergency home work primary secondary alt alternate preferred pref legal " +
		"given family full current curr prev previous new old")
	// nonPerson: "<thing>_name" is the thing's name, not a person's.
	nonPerson = []string{"med", "meds", "medication", "medications", "drug", "drugs", "rx", "study", "site", "form",
		"event", "file", "product", "brand", "test", "lab", "clinic", "hospital", "facility", "program", "programme",
		"trial", "device", "instrument", "project", "arm", "dag", "group", "variable", "field", "item", "scale",
		"center", "centre", "institution", "org", "organization", "organisation", "company", "pharmacy", "supplement",
		"vaccine", "food", "diagnosis", "dx", "condition", "procedure", "insurance", "plan", "protocol", "app", "user",
		"street", "city", "county", "country", "state", "town", "school", "team", "unit", "ward", "generic",
		"chemical", "substance", "species", "pet", "game", "sport", "activity", "exercise", "task", "treatment"}
	notAddress = []string{"email", "mail", "e", "ip", "mac", "web", "url", "internet", "website"}
)

func words(s string) []string { return strings.Fields(s) }

func seq(s string) []string { return strings.Fields(s) }

// lexicon: every category of the rule has words here; see phi_test.go for
// the names each must catch and the look-alikes each must leave alone.
var lexicon = []entry{
	// (A) names, including relatives' and employers'
	{seq: seq("name"), cats: []Category{Names}, notBefore: nonPerson},
	{seq: seq("fname"), cats: []Category{Names}},
	{seq: seq("lname"), cats: []Category{Names}},
	{seq: seq("mname"), cats: []Category{Names}},
	{seq: seq("surname"), cats: []Category{Names}},
	{seq: seq("forename"), cats: []Category{Names}},
	{seq: seq("nickname"), cats: []Category{Names}},
	{seq: seq("maiden"), cats: []Category{Names}},
	{seq: seq("initials"), cats: []Category{Names}},
	{seq: seq("signature"), cats: []Category{Names, Biometric}},
	{seq: seq("first"), cats: []Category{Names}, alone: true},
	{seq: seq("last"), cats: []Category{Names}, alone: true},
	{seq: seq("middle"), cats: []Category{Names}, alone: true},
	{seq: seq("employer"), cats: []Category{Names}},
	{seq: seq("next of kin"), cats: []Category{Names}},
	{seq: seq("nok"), cats: []Category{Names}},

	// (B) geographic subdivisions smaller than a state
	{seq: seq("address"), cats: []Category{Geographic}, coded: true, notBefore: notAddress},
	{seq: seq("addr"), cats: []Category{Geographic}, coded: true, notBefore: notAddress},
	{seq: seq("street"), cats: []Category{Geographic}, coded: true},
	{seq: seq("city"), cats: []Category{Geographic}, coded: true},
	{seq: seq("town"), cats: []Category{Geographic}, coded: true},
	{seq: seq("township"), cats: []Category{Geographic}, coded: true},
	{seq: seq("village"), cats: []Category{Geographic}, coded: true},
	{seq: seq("borough"), cats: []Category{Geographic}, coded: true},
	{seq: seq("county"), cats: []Category{Geographic}, coded: true},
	{seq: seq("precinct"), cats: []Category{Geographic}, coded: true},
	{seq: seq("neighborhood"), cats: []Category{Geographic}, coded: true},
	{seq: seq("neighbourhood"), cats: []Category{Geographic}, coded: true},
	{seq: seq("tract"), cats: []Category{Geographic}, coded: true},
	{seq: seq("zip"), cats: []Category{Geographic}, coded: true},
	{seq: seq("zipcode"), cats: []Category{Geographic}, coded: true},
	{seq: seq("postal"), cats: []Category{Geographic}, coded: true},
	{seq: seq("postcode"), cats: []Category{Geographic}, coded: true},
	{seq: seq("postalcode"), cats: []Category{Geographic}, coded: true},
	{seq: seq("geocode"), cats: []Category{Geographic}, coded: true},
	{seq: seq("latitude"), cats: []Category{Geographic}, coded: true},
	{seq: seq("longitude"), cats: []Category{Geographic}, coded: true},
	{seq: seq("gps"), cats: []Category{Geographic}, coded: true},
	{seq: seq("coordinates"), cats: []Category{Geographic}, coded: true},

	// (C) dates other than year directly related to a person, and ages over 89
	{seq: seq("dob"), cats: []Category{Dates}, coded: true},
	{seq: seq("dod"), cats: []Category{Dates}, coded: true},
	{seq: seq("birthdate"), cats: []Category{Dates}, coded: true},
	{seq: seq("birthday"), cats: []Category{Dates}, coded: true},
	{seq: seq("date of birth"), cats: []Category{Dates}, coded: true},
	{seq: seq("year of birth"), cats: []Category{Dates}, coded: true},
	{seq: seq("month of birth"), cats: []Category{Dates}, coded: true},
	{seq: seq("birth"), cats: []Category{Dates}, coded: true,
		notBefore: words("of at sex gender assigned given gave giving give"),
		notAfter:  words("weight order control rank defect defects length height place country state sex gender")},
	{seq: seq("death date"), cats: []Category{Dates}, coded: true},
	{seq: seq("deathdate"), cats: []Category{Dates}, coded: true},
	{seq: seq("date of death"), cats: []Category{Dates}, coded: true},
	{seq: seq("age"), cats: []Category{Dates}, coded: true, age: true},

	// (D) telephone and (E) fax numbers
	{seq: seq("phone"), cats: []Category{Phone}},
	{seq: seq("telephone"), cats: []Category{Phone}},
	{seq: seq("tel"), cats: []Category{Phone}},
	{seq: seq("phn"), cats: []Category{Phone}},
	{seq: seq("pager"), cats: []Category{Phone}},
	{seq: seq("cell"), cats: []Category{Phone}, with: numberWords, alone: true},
	{seq: seq("mobile"), cats: []Category{Phone}, with: numberWords, alone: true},
	{seq: seq("ph"), cats: []Category{Phone}, with: words("no num nbr number")},
	{seq: seq("contact number"), cats: []Category{Phone}},
	{seq: seq("fax"), cats: []Category{Fax}},
	{seq: seq("facsimile"), cats: []Category{Fax}},

	// (F) e-mail addresses
	{seq: seq("email"), cats: []Category{Email}},
	{seq: seq("e mail"), cats: []Category{Email}},

	// (G) social security numbers
	{seq: seq("ssn"), cats: []Category{SSN}},
	{seq: seq("social security"), cats: []Category{SSN}},
	{seq: seq("socsec"), cats: []Category{SSN}},
	{seq: seq("ss"), cats: []Category{SSN}, with: words("no num nbr number")},

	// (H) medical record numbers
	{seq: seq("mrn"), cats: []Category{MRN}},
	{seq: seq("vmrn"), cats: []Category{MRN}},
	{seq: seq("medrec"), cats: []Category{MRN}},
	{seq: seq("medical record"), cats: []Category{MRN}},
	{seq: seq("med rec"), cats: []Category{MRN}},
	{seq: seq("chart"), cats: []Category{MRN}, with: numberWords},
	{seq: seq("emr"), cats: []Category{MRN}, with: numberWords},
	{seq: seq("ehr"), cats: []Category{MRN}, with: numberWords},
	{seq: seq("hospital"), cats: []Category{MRN}, with: numberWords},
	{seq: seq("hosp"), cats: []Category{MRN}, with: numberWords},

	// (I) health plan beneficiary numbers
	{seq: seq("medicaid"), cats: []Category{HealthPlan}, with: numberWords},
	{seq: seq("medicare"), cats: []Category{HealthPlan}, with: numberWords},
	{seq: seq("insurance"), cats: []Category{HealthPlan}, with: append(words("member policy"), numberWords...)},
	{seq: seq("insurer"), cats: []Category{HealthPlan}, with: numberWords},
	{seq: seq("health plan"), cats: []Category{HealthPlan}},
	{seq: seq("member"), cats: []Category{HealthPlan}, with: numberWords},
	{seq: seq("subscriber"), cats: []Category{HealthPlan}, with: numberWords},
	{seq: seq("beneficiary"), cats: []Category{HealthPlan}},
	{seq: seq("policy"), cats: []Category{HealthPlan}, with: words("no num nbr number")},
	{seq: seq("mbi"), cats: []Category{HealthPlan}},
	{seq: seq("hicn"), cats: []Category{HealthPlan}},

	// (J) account numbers
	{seq: seq("account"), cats: []Category{Account}, with: numberWords, alone: true},
	{seq: seq("acct"), cats: []Category{Account}, with: numberWords, alone: true},
	{seq: seq("bank"), cats: []Category{Account}, with: append(words("account acct"), numberWords...)},
	{seq: seq("iban"), cats: []Category{Account}},
	{seq: seq("routing"), cats: []Category{Account}, with: numberWords},
	{seq: seq("credit card"), cats: []Category{Account}},
	{seq: seq("card"), cats: []Category{Account}, with: words("no num nbr number")},

	// (K) certificate and licence numbers
	{seq: seq("license"), cats: []Category{License}, with: numberWords, alone: true},
	{seq: seq("licence"), cats: []Category{License}, with: numberWords, alone: true},
	{seq: seq("lic"), cats: []Category{License}, with: numberWords},
	{seq: seq("drivers license"), cats: []Category{License}},
	{seq: seq("driver license"), cats: []Category{License}},
	{seq: seq("driving licence"), cats: []Category{License}},
	{seq: seq("passport"), cats: []Category{License}},
	{seq: seq("certificate"), cats: []Category{License}, with: numberWords},
	{seq: seq("cert"), cats: []Category{License}, with: numberWords},

	// (L) vehicle identifiers, licence plates
	{seq: seq("vin"), cats: []Category{Vehicle}},
	{seq: seq("vehicle"), cats: []Category{Vehicle}, with: append(words("plate reg registration serial"), numberWords...)},
	{seq: seq("license plate"), cats: []Category{Vehicle}},
	{seq: seq("licence plate"), cats: []Category{Vehicle}},
	{seq: seq("plate"), cats: []Category{Vehicle}, with: words("no num nbr number")},

	// (M) device identifiers and serial numbers
	{seq: seq("device"), cats: []Category{Device}, with: append(words("serial sn udi"), numberWords...)},
	{seq: seq("serial"), cats: []Category{Device}, with: numberWords, alone: true},
	{seq: seq("udi"), cats: []Category{Device}},
	{seq: seq("imei"), cats: []Category{Device}},
	{seq: seq("mac address"), cats: []Category{Device}},
	{seq: seq("mac addr"), cats: []Category{Device}},

	// (N) web URLs and (O) IP addresses
	{seq: seq("url"), cats: []Category{URL}},
	{seq: seq("uri"), cats: []Category{URL}},
	{seq: seq("website"), cats: []Category{URL}},
	{seq: seq("homepage"), cats: []Category{URL}},
	{seq: seq("webpage"), cats: []Category{URL}},
	{seq: seq("web address"), cats: []Category{URL}},
	{seq: seq("web site"), cats: []Category{URL}},
	{seq: seq("web page"), cats: []Category{URL}},
	{seq: seq("ip address"), cats: []Category{IP}},
	{seq: seq("ip addr"), cats: []Category{IP}},
	{seq: seq("ipv"), cats: []Category{IP}},
	{seq: seq("ip"), cats: []Category{IP}, alone: true},

	// (P) biometric identifiers and (Q) photographs
	{seq: seq("fingerprint"), cats: []Category{Biometric}},
	{seq: seq("fingerprints"), cats: []Category{Biometric}},
	{seq: seq("finger print"), cats: []Category{Biometric}},
	{seq: seq("voiceprint"), cats: []Category{Biometric}},
	{seq: seq("voice print"), cats: []Category{Biometric}},
	{seq: seq("palm print"), cats: []Category{Biometric}},
	{seq: seq("faceprint"), cats: []Category{Biometric}},
	{seq: seq("retina"), cats: []Category{Biometric}},
	{seq: seq("retinal"), cats: []Category{Biometric}, with: words("scan image")},
	{seq: seq("iris scan"), cats: []Category{Biometric}},
	{seq: seq("biometric"), cats: []Category{Biometric}},
	{seq: seq("biometrics"), cats: []Category{Biometric}},
	{seq: seq("photo"), cats: []Category{Photo}},
	{seq: seq("photos"), cats: []Category{Photo}},
	{seq: seq("photograph"), cats: []Category{Photo}},
	{seq: seq("headshot"), cats: []Category{Photo}},
	{seq: seq("selfie"), cats: []Category{Photo}},
	{seq: seq("face"), cats: []Category{Photo}, with: words("image picture pic img")},
	{seq: seq("facial"), cats: []Category{Photo}, with: words("image picture pic img")},

	// (R) any other unique identifying number or code
	{seq: seq("user name"), cats: []Category{OtherID}},
	{seq: seq("username"), cats: []Category{OtherID}},
	{seq: seq("user id"), cats: []Category{OtherID}},
	{seq: seq("userid"), cats: []Category{OtherID}},
	{seq: seq("login"), cats: []Category{OtherID}},
	{seq: seq("national id"), cats: []Category{OtherID}},
	{seq: seq("id number"), cats: []Category{OtherID}},
	{seq: seq("employee"), cats: []Category{OtherID}, with: numberWords},
	{seq: seq("student"), cats: []Category{OtherID}, with: numberWords},
	{seq: seq("tax id"), cats: []Category{OtherID}},
	{seq: seq("nhs"), cats: []Category{OtherID}, with: numberWords},
	{seq: seq("twitter"), cats: []Category{OtherID}},
	{seq: seq("instagram"), cats: []Category{OtherID}},
	{seq: seq("facebook"), cats: []Category{OtherID}},
}

// vocabulary is every word the lexicon knows, for splitting run-together
// names; heads are the words that start a detection.
var vocabulary, heads = func() (map[string]bool, map[string]bool) {
	v, h := map[string]bool{}, map[string]bool{}
	add := func(ws ...string) {
		for _, w := range ws {
			if len(w) >= 2 {
				v[w] = true
			}
		}
	}
	for _, e := range lexicon {
		add(e.seq...)
		add(e.with...)
		h[e.seq[0]] = true
	}
	add(numberWords...)
	add(qualifiers...)
	add(nonPerson...)
	// neutral words that often join the others: "dobmonth", "ageyrs"
	add(words("code date day month year yrs years of at cell phone print")...)
	return v, h
}()

// byFirst indexes the lexicon by an entry's first word.
var byFirst = func() map[string][]int {
	m := map[string][]int{}
	for i, e := range lexicon {
		m[e.seq[0]] = append(m[e.seq[0]], i)
	}
	return m
}()

func in(w string, list []string) bool {
	for _, x := range list {
		if x == w {
			return true
		}
	}
	return false
}
