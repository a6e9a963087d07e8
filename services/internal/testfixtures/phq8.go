package testfixtures

// PHQ8Export is a PHQ-8 as a university REDCap exports it (the NDCLab
// instrument zip's instrument.csv shape: UI-layout header, variables named
// phq8_i<n>_s1_r1_e1, one matrix group, the published PHQ-8 wording with
// the site's punctuation). The PHQ-8 needs no permission to use; the AGPL
// zip itself is not copied (see README.md).
const PHQ8Export = `"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number","Text Validation Min","Text Validation Max",Identifier?,"Branching Logic (Show field only if...)","Required Field?","Custom Alignment","Question Number (surveys only)","Matrix Group Name","Matrix Ranking?","Field Annotation"
phq8_i1_s1_r1_e1,phq8_s1_r1_e1,,radio,"Little interest or pleasure in doing things","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
phq8_i2_s1_r1_e1,phq8_s1_r1_e1,,radio,"Feeling down, depressed, or hopeless","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
phq8_i3_s1_r1_e1,phq8_s1_r1_e1,,radio,"Trouble falling or staying asleep, or sleeping too much","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
phq8_i4_s1_r1_e1,phq8_s1_r1_e1,,radio,"Feeling tired or having little energy","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
phq8_i5_s1_r1_e1,phq8_s1_r1_e1,,radio,"Poor appetite or overeating","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
phq8_i6_s1_r1_e1,phq8_s1_r1_e1,,radio,"Feeling bad about yourself - or that you are a failure or have let yourself or your family down","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
phq8_i7_s1_r1_e1,phq8_s1_r1_e1,,radio,"Trouble concentrating on things, such as reading the newspaper or watching television","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
phq8_i8_s1_r1_e1,phq8_s1_r1_e1,,radio,"Moving or speaking so slowly that other people could have noticed. Or the opposite - being so fidgety or restless that you have been moving around a lot more than usual","0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day",,,,,,,y,,,phq_b1ea35,,
`
